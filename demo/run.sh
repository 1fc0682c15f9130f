#!/usr/bin/env bash
# The main job: bring the real stack up and run assistlog on demo
# conversations generated from the shared booking dialogues.
#   assistant log files ──▶ collector ──▶ Kafka ──▶ shipper ──▶ Elasticsearch + Loki
# STORE=opensearch (make demo STORE=opensearch) runs it on OpenSearch instead,
# STORE=both writes both (OpenSearch as a mirror) and reads Elasticsearch.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

go run ./stack/cmd/stack up
eval "$(go run ./stack/cmd/stack env)"
STORE="${STORE:-elasticsearch}"
mirror=""
case "$STORE" in
  elasticsearch) STORE_URL=$ASSISTLOG_ELASTICSEARCH_URL; store_kind=elasticsearch; store_name=Elasticsearch ;;
  opensearch) STORE_URL=$ASSISTLOG_OPENSEARCH_URL; store_kind=opensearch; store_name=OpenSearch ;;
  both) STORE_URL=$ASSISTLOG_ELASTICSEARCH_URL; store_kind=elasticsearch; store_name="Elasticsearch (and OpenSearch)"
    mirror=$(printf 'mirrors:\n  - urls: ["%s"]\n    store: opensearch' "$ASSISTLOG_OPENSEARCH_URL") ;;
  *) echo "STORE must be elasticsearch, opensearch or both, not '$STORE'" >&2; exit 2 ;;
esac

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
go build -o "$out/bin/shipper" ./shipper
export DEMO_WEBHOOK_TOKEN="demo-token-salon-aurora-0001"
# Personal data: the collector masks at the edge and seals numbers with this
# key, so no phone number or e-mail reaches Kafka raw (README "Personal data").
export ASSISTLOG_PII_SECRET="${ASSISTLOG_PII_SECRET:-demo-pii-secret-change-me}"
export ASSISTLOG_PII_KEY="${ASSISTLOG_PII_KEY:-demo-aes-key-0123456789abcdef0123456789abcdef}"
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
pii:
  hash_secret: "\${ASSISTLOG_PII_SECRET}"
  keys: [{id: demo1, key: "\${ASSISTLOG_PII_KEY}"}]
  current_key: demo1
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
echo "== starting the Bitrix24 stand-in (the tests' contract-faithful fake portal, HTTPS)"
go build -o "$out/bin/bitrix24-fake" ./demo/cmd/bitrix24-fake
rm -f "$out/bitrix24-ca.pem"
# The cloud drains 2 requests/s; the demo's portal drains 50/s (an
# enterprise-sized plan) so that some 1,300 leads take a minute, not half
# an hour. The client keeps to the same rate.
"$out/bin/bitrix24-fake" --listen 127.0.0.1:19180 --cert-out "$out/bitrix24-ca.pem" --state "$out/bitrix24-state.json" \
  --rate 50 > "$out/bitrix24-url" 2> "$out/bitrix24.log" &
fpid=$!
trap 'kill $fpid 2>/dev/null || true' EXIT
for i in $(seq 1 600); do
  [ -s "$out/bitrix24-url" ] && break
  kill -0 $fpid 2>/dev/null || { echo "the Bitrix24 stand-in exited; log:"; tail -20 "$out/bitrix24.log"; exit 1; }
  sleep 0.1
done
[ -s "$out/bitrix24-url" ] || { echo "the Bitrix24 stand-in did not start within 60 s; log:"; tail -20 "$out/bitrix24.log"; exit 1; }
export BITRIX24_WEBHOOK_URL=$(cat "$out/bitrix24-url")
echo "   portal: $BITRIX24_WEBHOOK_URL (certificate $out/bitrix24-ca.pem)"

echo
echo "== running the shipper: Kafka → Bitrix24 lead ids → masked → $store_name and Loki"
cat > "$out/shipper.yaml" <<YAML
kafka:
  brokers: ["$ASSISTLOG_KAFKA_BROKERS"]
  group_id: assistlog-demo
elasticsearch:
  urls: ["$STORE_URL"]
  store: $store_kind
$mirror
loki:
  url: $ASSISTLOG_LOKI_URL
  # The stack's Loki (stack/loki_config.go): a 7-day out-of-order window
  # and 32MB/64MB per stream, so a week's backfill shares requests.
  max_chunk_age: 336h
  per_stream_rate_limit: 33554432
  per_stream_rate_limit_burst: 67108864
pii:
  hash_secret: "\${ASSISTLOG_PII_SECRET}"
  keys: [{id: demo1, key: "\${ASSISTLOG_PII_KEY}"}]
  current_key: demo1
crm:
  enabled: true
  sync: true
  bitrix24:
    webhook_url: "\${BITRIX24_WEBHOOK_URL}"
    ca_file: $out/bitrix24-ca.pem
    rate_per_second: 50
  worker_group_id: assistlog-demo-crm
  conversation_url: "http://127.0.0.1:5601/app/discover#/?_a=(query:(language:lucene,query:'tenant:\"{tenant}\" AND session_id:\"{session_id}\"'))"
http:
  listen: 127.0.0.1:19102
YAML
"$out/bin/shipper" --config "$out/shipper.yaml" 2> "$out/shipper.log" &
spid=$!
trap 'kill $spid $fpid 2>/dev/null || true' EXIT
# Done when the group has no lag left, as Kafka's own tool reports it.
lag() {
  "$ASSISTLOG_JAVA" -Xmx128m -cp "$ASSISTLOG_KAFKA_CLASSPATH" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$ASSISTLOG_KAFKA_BROKERS" --describe --group "$1" 2>/dev/null |
    awk -v g="$1" '$1==g && $6 ~ /^[0-9]+$/ {s+=$6; n++} END {if (n==0) print -1; else print s}'
}
for i in $(seq 1 900); do
  m=$(curl -fs http://127.0.0.1:19102/metrics 2>/dev/null || true)
  shipped=$(printf '%s\n' "$m" | awk '$1=="assistlog_shipper_events_total" {s+=$2} END {print int(s)}')
  pending=$(printf '%s\n' "$m" | awk '$1=="assistlog_crm_pending_links" {print int($2)}')
  left=$(lag assistlog-demo)
  crmleft=$(lag assistlog-demo-crm)
  printf '\r   shipper: %s events into the search store and Loki; consumer lag %s; CRM links pending %s, requests left %s    ' \
    "$shipped" "$left" "${pending:-?}" "$crmleft"
  [ "$left" = "0" ] && [ "${pending:-1}" = "0" ] && [ "$crmleft" = "0" ] && break
  kill -0 $spid 2>/dev/null || { echo; echo "shipper exited; log:"; tail -20 "$out/shipper.log"; exit 1; }
  sleep 1
done
echo
kill -TERM $spid; wait $spid || true
echo
echo "== archiving: Kafka → masked Parquet in the stack's S3 server (shipper archive, its own consumer group)"
cp "$out/shipper.yaml" "$out/archive.yaml"
cat >> "$out/archive.yaml" <<YAML
archive:
  s3:
    endpoint: $ASSISTLOG_S3_URL
    bucket: $ASSISTLOG_S3_BUCKET
    prefix: events
    access_key: "\${ASSISTLOG_S3_ACCESS_KEY}"
    secret_key: "\${ASSISTLOG_S3_SECRET_KEY}"
    path_style: true
  group_id: assistlog-demo-archive
  tenants_file: $PWD/demo/tenants.yaml
  roll_interval: 5s
  listen: 127.0.0.1:19103
YAML
"$out/bin/shipper" archive --config "$out/archive.yaml" 2> "$out/archive.log" &
apid=$!
trap 'kill $apid $fpid 2>/dev/null || true' EXIT
for i in $(seq 1 600); do
  left=$(lag assistlog-demo-archive)
  printf '\r   archiver: consumer lag %s    ' "$left"
  [ "$left" = "0" ] && break
  kill -0 $apid 2>/dev/null || { echo; echo "archiver exited; log:"; tail -20 "$out/archive.log"; exit 1; }
  sleep 1
done
echo
kill -TERM $apid; wait $apid || true
trap 'kill $fpid 2>/dev/null || true' EXIT
# One SQL answer read back through the S3 API (pyarrow + DuckDB). Each run
# archives its events again (ids repeat), hence DISTINCT.
archived=$(ARCHIVE_PREFIX=events "$ASSISTLOG_ARCHIVE_PYTHON" internal/archive/read_archive.py sql \
  "SELECT count(DISTINCT event_id) AS n FROM events WHERE event_type = 'appointment.confirmed'" |
  python3 -c 'import json,sys;print(json.loads(sys.stdin.readline())["n"])' || echo "?")
# The portal's own view: leads made by the assistant, read over its REST API.
crm=$(curl -fs --cacert "$out/bitrix24-ca.pem" "${BITRIX24_WEBHOOK_URL}crm.lead.list.json" -H 'Content-Type: application/json' \
  -d '{"filter":{"SOURCE_ID":"WEB"},"select":["ID"]}' | python3 -c 'import json,sys;print(json.load(sys.stdin).get("total",0))' || echo "?")

echo
echo "== auditing: consent of every lead, and the logs reconciled with the portal's leads"
go build -o "$out/bin/audit" ./audit
cat > "$out/audit.yaml" <<YAML
elasticsearch:
  urls: ["$STORE_URL"]
  store: $store_kind
tenants_file: $PWD/demo/tenants.yaml
crm:
  bitrix24:
    webhook_url: "\${BITRIX24_WEBHOOK_URL}"
    ca_file: $out/bitrix24-ca.pem
    rate_per_second: 50
  source_id: WEB
pii:
  hash_secret: "\${ASSISTLOG_PII_SECRET}"
YAML
curl -fs -X POST "$STORE_URL/assistant-events/_refresh" >/dev/null
# The period is the generator's: the last 7 days up to now, in each tenant's zone.
# A booked conversation to replay in the hints below.
session=$(curl -fs "$STORE_URL/assistant-events/_search" -H 'Content-Type: application/json' \
  -d '{"size":1,"query":{"term":{"event_type":"appointment.attended"}},"sort":[{"@timestamp":"desc"}]}' |
  python3 -c 'import json,sys;h=json.load(sys.stdin)["hits"]["hits"];print(h[0]["_source"]["session_id"] if h else "")')
consentline=$("$out/bin/audit" consent --config "$out/audit.yaml" --last 8d 2>&1 >"$out/consent.txt" | tail -n1)
reconline=$("$out/bin/audit" reconcile --config "$out/audit.yaml" --last 8d --discrepancies "$out/discrepancies.csv" \
  2>&1 >"$out/reconcile.txt" | tail -n1)
kill -TERM $fpid; wait $fpid || true
trap - EXIT

echo
echo "== reading back"
count=$("$ASSISTLOG_JAVA" -Xmx256m -cp "$ASSISTLOG_KAFKA_CLASSPATH" org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$ASSISTLOG_KAFKA_BROKERS" --topic assistant.events --from-beginning \
  --timeout-ms 15000 2>/dev/null | grep -c '"event_id"' || true)
curl -fs -X POST "$STORE_URL/assistant-events/_refresh" >/dev/null
summary=$(curl -fs "$STORE_URL/assistant-events/_search" -H 'Content-Type: application/json' \
  -d '{"size":0,"track_total_hits":true,"aggs":{"types":{"terms":{"field":"event_type","size":30}},"tenants":{"cardinality":{"field":"tenant"}},"sessions":{"cardinality":{"field":"session_id"}},"crm":{"terms":{"field":"crm_status"}}}}' |
  python3 -c '
import json,sys
r=json.load(sys.stdin); a=r["aggregations"]; t={b["key"]:b["doc_count"] for b in a["types"]["buckets"]}
print("  %d events, %d sessions, %d tenants" % (r["hits"]["total"]["value"], a["sessions"]["value"], a["tenants"]["value"]))
print("  leads created: %d   appointments confirmed: %d   attended: %d   no-show: %d" % (t.get("lead.created",0), t.get("appointment.confirmed",0), t.get("appointment.attended",0), t.get("appointment.no_show",0)))
print("  handed to a manager: %d   complaints: %d   errors: %d" % (t.get("handoff.requested",0), t.get("complaint.received",0), t.get("error",0)))
c={b["key"]:b["doc_count"] for b in a["crm"]["buckets"]}
print("  CRM: %d events carry their conversation'"'"'s lead id; pending %d, no lead %d, failed %d" % (c.get("resolved",0), c.get("pending",0), c.get("no_lead",0), c.get("failed",0)))')
# A week of every run's lines: on a stack holding many runs Loki can take
# longer than its 1 m query timeout, so the count is asked three times and,
# failing that, reported as not counted.
loki=""
for try in 1 2 3; do
  if answer=$(curl -fs --max-time 120 -G "$ASSISTLOG_LOKI_URL/loki/api/v1/query" \
      --data-urlencode 'query=sum(count_over_time({app="assistlog"}[7d]))') && [ -n "$answer" ]; then
    loki=$(printf '%s' "$answer" | python3 -c 'import json,sys;r=json.load(sys.stdin)["data"]["result"];print(r[0]["value"][1] if r else 0)')
    break
  fi
  sleep 5
done
[ -n "$loki" ] || loki="not counted (Loki did not answer the count in 3 tries)"

cat <<MSG

assistlog demo
  generated:      $events events ($confirmed appointment.confirmed) from the SGD booking dialogues
  collector:      $out/logs/assistant-*.jsonl* → Kafka (log: $out/collector.log)
  Kafka:          $count events in assistant.events (each run adds its events again; ids repeat)
  shipper:        Kafka → Bitrix24 lead ids → $store_name + Loki, phone numbers masked (log: $out/shipper.log)
  Bitrix24:       $crm leads made by the assistant in the stand-in portal (crm.lead.list; log: $out/bitrix24.log)
  $(printf '%-15s' "$STORE:") $STORE_URL/assistant-events/_search  (alias over assistant-events-YYYY.MM)
$summary
  archive:        s3://$ASSISTLOG_S3_BUCKET/events/tenant=…/dt=…/*.parquet (log: $out/archive.log); SQL over it:
                  SELECT count(DISTINCT event_id) FROM events WHERE event_type = 'appointment.confirmed'  →  $archived
                  (Athena/Trino DDL and more queries: docs/archive.md)
  Loki:           $loki lines (each run adds lines: its timestamps differ); try: curl -G $ASSISTLOG_LOKI_URL/loki/api/v1/query_range \\
                    --data-urlencode 'query={app="assistlog", event_type="appointment.confirmed"}'
  audit:          $reconline
                  (per tenant: $out/reconcile.txt; every unmatched item: $out/discrepancies.csv)
                  $consentline  (every lead: $out/consent.txt)
                  try: $out/bin/audit help;  $out/bin/audit kpi --config $out/audit.yaml --last 7d
                       $out/bin/audit conversation --config $out/audit.yaml $session
                       $out/bin/audit report --config $out/audit.yaml --tenant salon-aurora --week $(date +%G-W%V) --out report.html
  alerts:         $ASSISTLOG_ALERTMANAGER_URL/api/v2/alerts (content rules in the Loki ruler, pipeline rules in Prometheus;
                  with the programs stopped, AssistlogProgramDown fires and holds back the content alerts)
  dashboards:     dashboards/grafana/*.json with the provisioning in dashboards/grafana/provisioning/
  metrics:        collector 127.0.0.1:19101 and shipper 127.0.0.1:19102 /metrics, scraped by Prometheus at $ASSISTLOG_PROMETHEUS_URL
  stack:          go run ./stack/cmd/stack status   (make down stops it)
MSG
[ "$count" -ge "$events" ]
