#!/usr/bin/env bash
# The main job: bring the real stack up and run assistlog on demo
# conversations generated from the shared booking dialogues.
#   assistant log files ──▶ collector ──▶ Kafka (assistant.events)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

go run ./stack/cmd/stack up
eval "$(go run ./stack/cmd/stack env)"

out="${ASSISTLOG_DEMO_DIR:-${TMPDIR:-/tmp}/assistlog-demo}"
rm -rf "$out/logs" "$out/positions.json"
mkdir -p "$out/bin"
echo
echo "== generating demo conversations (assistant log files, 3 files, rotated at 4 MB)"
go run ./demo/cmd/gen files --out "$out/logs" --files 3 --rotate-bytes 4MB
events=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["events"])' "$out/logs/truth.json")
confirmed=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["by_type"]["appointment.confirmed"])' "$out/logs/truth.json")

echo
echo "== running the collector on them"
go build -o "$out/bin/collector" ./collector
export DEMO_WEBHOOK_TOKEN="demo-token-salon-aurora-0001"
cat > "$out/collector.yaml" <<YAML
kafka:
  brokers: ["$ASSISTLOG_KAFKA_BROKERS"]
files:
  include: ["$out/logs/*.jsonl", "$out/logs/*.jsonl.[0-9]*"]
positions:
  path: $out/positions.json
webhook:
  listen: 127.0.0.1:18088
  tenants:
    - tenant: salon-aurora
      tokens: ["\${DEMO_WEBHOOK_TOKEN}"]
http:
  listen: 127.0.0.1:19101
YAML
"$out/bin/collector" --config "$out/collector.yaml" 2> "$out/collector.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
metric() { curl -fs http://127.0.0.1:19101/metrics | awk -v m="$1" '$1==m {print int($2)}'; }
for i in $(seq 1 600); do
  got=$(metric 'assistlog_collector_events_total{source="file"}' 2>/dev/null || true)
  printf '\r   collector: %s/%s events acknowledged by Kafka' "${got:-0}" "$events"
  [ "${got:-0}" -ge "$events" ] && break
  kill -0 $pid 2>/dev/null || { echo; echo "collector exited; log:"; tail -20 "$out/collector.log"; exit 1; }
  sleep 0.5
done
echo
echo "== one event through the webhook (202 = acknowledged by Kafka)"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -s -o /dev/stderr -w '   HTTP %{http_code}\n' -X POST http://127.0.0.1:18088/v1/events \
  -H "Authorization: Bearer $DEMO_WEBHOOK_TOKEN" \
  -d '{"event_id":"demo-webhook-'"$(date +%s)"'","timestamp":"'"$now"'","tenant":"salon-aurora","channel":"web","session_id":"demo-webhook","event_type":"session.started","level":"info","schema_version":1}'
kill -TERM $pid; wait $pid || true
trap - EXIT

echo
echo "== reading assistant.events back with Kafka's own console consumer"
count=$("$ASSISTLOG_JAVA" -Xmx256m -cp "$ASSISTLOG_KAFKA_CLASSPATH" org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$ASSISTLOG_KAFKA_BROKERS" --topic assistant.events --from-beginning \
  --timeout-ms 15000 2>/dev/null | grep -c '"event_id"' || true)

cat <<MSG

assistlog demo
  generated:   $events events ($confirmed appointment.confirmed) from the SGD booking dialogues
  collected:   $out/logs/assistant-*.jsonl* → Kafka by the collector (log: $out/collector.log)
  in Kafka:    $count events in assistant.events (each demo run adds its events again;
               event ids repeat, so downstream writes are idempotent)
  metrics:     the collector's /metrics is scraped by Prometheus at $ASSISTLOG_PROMETHEUS_URL
  stack:       go run ./stack/cmd/stack status   (make down stops it)
  read Kafka:  $ASSISTLOG_JAVA -cp '$ASSISTLOG_KAFKA_CLASSPATH' \\
                 org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $ASSISTLOG_KAFKA_BROKERS \\
                 --topic assistant.events --from-beginning --max-messages 5
MSG
[ "$count" -ge "$events" ]
