{{/* The programs' configuration files, built from the values. Fields not set
here keep the programs' defaults (collector/collector.example.yaml,
shipper/shipper.example.yaml, audit/audit.example.yaml). Secrets appear
only as ${VAR}, filled from the environment (existing Secrets). */}}

{{/* kafka: of a program (.program: collector or shipper, whose SASL
user it is); certificates are the files assistlog.certVolumes mounts. */}}
{{- define "assistlog.kafkaConfig" -}}
{{- $k := .root.Values.kafka -}}
brokers: {{ toJson $k.brokers }}
topic: {{ $k.topic | quote }}
dead_letter_topic: {{ $k.deadLetterTopic | quote }}
{{- if $k.tls.enabled }}
tls:
  enabled: true
  {{- if $k.tls.caSecret.name }}
  ca_file: /etc/assistlog-certs/kafka-ca/ca.crt
  {{- end }}
  {{- if $k.tls.clientSecret.name }}
  cert_file: /etc/assistlog-certs/kafka-client/tls.crt
  key_file: /etc/assistlog-certs/kafka-client/tls.key
  {{- end }}
  {{- with $k.tls.serverName }}
  server_name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- if $k.sasl.mechanism }}
sasl:
  mechanism: {{ $k.sasl.mechanism }}
  username: {{ (index $k.sasl .program).username | quote }}
  password: "${KAFKA_SASL_PASSWORD}"
{{- end }}
{{- end -}}

{{/* pii: of the collector (edge sealing) when keys are given; the
shipper's keys are added to its own section. */}}
{{- define "assistlog.piiKeys" -}}
keys:
{{- range $i, $k := .Values.pii.keys }}
  - {id: {{ $k.id | quote }}, key: "${ASSISTLOG_PII_KEY_{{ $i }}}"}
{{- end }}
current_key: {{ .Values.pii.currentKey | quote }}
{{- end -}}

{{- define "assistlog.collectorConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" (dict "root" . "program" "collector") | nindent 2 }}
files:
  include: {{ toJson .Values.collector.include }}
  exclude: {{ toJson .Values.collector.exclude }}
  read_from: {{ .Values.collector.readFrom }}
positions:
  path: /var/lib/assistlog/collector/positions.json
http:
  listen: "0.0.0.0:19101"
log:
  level: {{ .Values.logLevel }}
{{- if .Values.pii.keys }}
pii:
  hash_secret: "${ASSISTLOG_PII_SECRET}"
  {{- include "assistlog.piiKeys" . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "assistlog.webhookConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" (dict "root" . "program" "collector") | nindent 2 }}
webhook:
  listen: "0.0.0.0:8088"
  {{- with .Values.collector.webhook.tls }}{{ if .secretName }}
  tls:
    cert_file: /etc/assistlog-certs/webhook/tls.crt
    key_file: /etc/assistlog-certs/webhook/tls.key
    {{- if .clientCASecret.name }}
    client_ca_file: /etc/assistlog-certs/webhook-client-ca/ca.crt
    {{- end }}
  {{- end }}{{ end }}
  tenants:
  {{- range $i, $t := .Values.collector.webhook.tenants }}
    - tenant: {{ $t.tenant | quote }}
      {{- if $t.tokenKey }}
      tokens: ["${WEBHOOK_TOKEN_{{ $i }}}"]
      {{- end }}
      {{- if $t.hmacSecretKey }}
      hmac_secret: "${WEBHOOK_HMAC_{{ $i }}}"
      {{- end }}
  {{- end }}
http:
  listen: "0.0.0.0:19101"
log:
  level: {{ .Values.logLevel }}
{{- if .Values.pii.keys }}
pii:
  hash_secret: "${ASSISTLOG_PII_SECRET}"
  {{- include "assistlog.piiKeys" . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* elasticsearch: of a program (.program: shipper or audit, whose user
it is). */}}
{{- define "assistlog.esConfig" -}}
{{- $e := .root.Values.elasticsearch -}}
urls: {{ toJson $e.urls }}
alias: {{ $e.alias | quote }}
{{- if .root.Values.secrets.elasticsearchApiKey.name }}
api_key: "${ES_API_KEY}"
{{- end }}
{{- with (index $e .program) }}{{ if .username }}
username: {{ .username | quote }}
password: "${ES_PASSWORD}"
{{- end }}{{ end }}
{{- if $e.caSecret.name }}
ca_file: /etc/assistlog-certs/es-ca/ca.crt
{{- end }}
{{- if and (eq .program "shipper") $e.tenantAliases }}
tenants_file: /etc/assistlog/tenants.yaml
{{- end }}
{{- end -}}

{{- define "assistlog.shipperConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" (dict "root" . "program" "shipper") | nindent 2 }}
  group_id: {{ .Values.shipper.groupId | quote }}
elasticsearch:
  {{- include "assistlog.esConfig" (dict "root" . "program" "shipper") | nindent 2 }}
loki:
  url: {{ .Values.loki.url | quote }}
  tenant_id: {{ .Values.loki.tenantId | quote }}
  {{- $s := .Values.shipper }}
  {{- $n := max 1 (ternary $s.autoscaling.maxReplicas $s.replicas $s.autoscaling.enabled) }}
  # This replica's share of the Loki's per-stream limits (of {{ $n }}).
  max_chunk_age: {{ .Values.loki.maxChunkAge | quote }}
  per_stream_rate_limit: {{ div (int64 .Values.loki.perStreamRateLimit) $n }}
  per_stream_rate_limit_burst: {{ div (int64 .Values.loki.perStreamRateLimitBurst) $n }}
pii:
  hash_secret: "${ASSISTLOG_PII_SECRET}"
  {{- if .Values.pii.keys }}
  {{- include "assistlog.piiKeys" . | nindent 2 }}
  {{- end }}
crm:
  enabled: {{ .Values.shipper.crm.enabled }}
  {{- if .Values.shipper.crm.enabled }}
  sync: {{ .Values.shipper.crm.sync }}
  source_id: {{ .Values.shipper.crm.sourceId | quote }}
  bitrix24:
    webhook_url: "${BITRIX24_WEBHOOK_URL}"
  {{- end }}
http:
  listen: "0.0.0.0:19102"
log:
  level: {{ .Values.logLevel }}
{{- end -}}

{{- define "assistlog.auditConfig" -}}
elasticsearch:
  {{- include "assistlog.esConfig" (dict "root" . "program" "audit") | nindent 2 }}
tenants_file: tenants.yaml
crm:
  source_id: {{ .Values.shipper.crm.sourceId | quote }}
  {{- if .Values.secrets.bitrix24WebhookUrl.name }}
  bitrix24:
    webhook_url: "${BITRIX24_WEBHOOK_URL}"
  {{- end }}
pii:
  hash_secret: "${ASSISTLOG_PII_SECRET}"
{{- end -}}

{{- define "assistlog.tenantsFile" -}}
retention: {{ .Values.audit.retentionDefault | quote }}
tenants:
{{- range .Values.audit.tenants }}
  - {name: {{ .name | quote }}, title: {{ default .name .title | quote }}, tz: {{ .tz | quote }}{{ with .retention }}, retention: {{ . | quote }}{{ end }}}
{{- end }}
{{- end -}}
