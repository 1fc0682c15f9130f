#!/usr/bin/env bash
# The main job: bring the real stack up and run assistlog on demo
# conversations generated from the shared booking dialogues.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

go run ./stack/cmd/stack up
eval "$(go run ./stack/cmd/stack env)"

out="${ASSISTLOG_DEMO_DIR:-${TMPDIR:-/tmp}/assistlog-demo}"
mkdir -p "$out"
echo
echo "== generating demo conversations and producing them to Kafka"
go run ./demo/cmd/gen files --out "$out/logs" --files 3
go run ./demo/cmd/gen kafka --brokers "$ASSISTLOG_KAFKA_BROKERS"

echo
echo "== reading assistant.events back with Kafka's own console consumer"
count=$("$ASSISTLOG_JAVA" -Xmx256m -cp "$ASSISTLOG_KAFKA_CLASSPATH" org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$ASSISTLOG_KAFKA_BROKERS" --topic assistant.events --from-beginning \
  --timeout-ms 15000 2>/dev/null | grep -c '"event_id"' || true)
confirmed=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["by_type"]["appointment.confirmed"])' "$out/logs/truth.json" 2>/dev/null || echo "?")
events=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["events"])' "$out/logs/truth.json" 2>/dev/null || echo "?")

cat <<MSG

assistlog demo
  generated:   $events events ($confirmed appointment.confirmed) from the SGD booking dialogues
  in Kafka:    $count events in assistant.events (every run adds its events again; ids repeat, sinks deduplicate)
  log files:   $out/logs/assistant-*.jsonl, ground truth in $out/logs/truth.json
  stack:       go run ./stack/cmd/stack status   (make down stops it)
  read Kafka:  $ASSISTLOG_JAVA -cp '$ASSISTLOG_KAFKA_CLASSPATH' \\
                 org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $ASSISTLOG_KAFKA_BROKERS \\
                 --topic assistant.events --from-beginning --max-messages 5
MSG
[ "$count" -gt 0 ]
