{{/* The programs' configuration files, built from the values. Fields not set
here keep the programs' defaults (collector/collector.example.yaml,
shipper/shipper.example.yaml, audit/audit.example.yaml). Secrets appear
only as ${VAR}, filled from the environment (existing Secrets). */}}

{{- define "assistlog.kafkaConfig" -}}
brokers: {{ toJson .Values.kafka.brokers }}
topic: {{ .Values.kafka.topic | quote }}
dead_letter_topic: {{ .Values.kafka.deadLetterTopic | quote }}
{{- end -}}

{{- define "assistlog.collectorConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" . | nindent 2 }}
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
{{- end -}}

{{- define "assistlog.webhookConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" . | nindent 2 }}
webhook:
  listen: "0.0.0.0:8088"
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
{{- end -}}

{{- define "assistlog.esConfig" -}}
urls: {{ toJson .Values.elasticsearch.urls }}
alias: {{ .Values.elasticsearch.alias | quote }}
{{- if .Values.secrets.elasticsearchApiKey.name }}
api_key: "${ES_API_KEY}"
{{- end }}
{{- end -}}

{{- define "assistlog.shipperConfig" -}}
kafka:
  {{- include "assistlog.kafkaConfig" . | nindent 2 }}
  group_id: {{ .Values.shipper.groupId | quote }}
elasticsearch:
  {{- include "assistlog.esConfig" . | nindent 2 }}
loki:
  url: {{ .Values.loki.url | quote }}
  tenant_id: {{ .Values.loki.tenantId | quote }}
pii:
  hash_secret: "${ASSISTLOG_PII_SECRET}"
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
  {{- include "assistlog.esConfig" . | nindent 2 }}
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
