{{/* Object name prefix: <release>-assistlog unless the release already says assistlog. */}}
{{- define "assistlog.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: only what never changes over the release's life (a
Deployment's selector is immutable), so no version or chart labels here. */}}
{{- define "assistlog.selectorLabels" -}}
app.kubernetes.io/name: {{ default .root.Chart.Name .root.Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "assistlog.labels" -}}
{{ include "assistlog.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: assistlog
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "assistlog.image" -}}
{{- $img := index .root.Values.images .program -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Checks the schema cannot express (it cannot compare two values). */}}
{{- define "assistlog.validate" -}}
{{- $p := int .Values.kafka.partitions -}}
{{- if and .Values.shipper.enabled (not .Values.shipper.autoscaling.enabled) (gt (int .Values.shipper.replicas) $p) -}}
{{- fail (printf "shipper.replicas (%d) must not exceed kafka.partitions (%d): an extra consumer would sit idle" (int .Values.shipper.replicas) $p) -}}
{{- end -}}
{{- if and .Values.shipper.enabled .Values.shipper.autoscaling.enabled -}}
{{- if gt (int .Values.shipper.autoscaling.maxReplicas) $p -}}
{{- fail (printf "shipper.autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d): an extra consumer would sit idle" (int .Values.shipper.autoscaling.maxReplicas) $p) -}}
{{- end -}}
{{- if gt (int .Values.shipper.autoscaling.minReplicas) (int .Values.shipper.autoscaling.maxReplicas) -}}
{{- fail "shipper.autoscaling.minReplicas must not exceed shipper.autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- if and (or .Values.shipper.crm.enabled (and .Values.audit.enabled .Values.audit.reconcile.enabled)) (not .Values.secrets.bitrix24WebhookUrl.name) -}}
{{- fail "secrets.bitrix24WebhookUrl.name is required when shipper.crm.enabled or audit.reconcile.enabled" -}}
{{- end -}}
{{- $ids := list -}}
{{- range .Values.pii.keys -}}
{{- if has .id $ids -}}
{{- fail (printf "pii.keys: id %q is listed twice" .id) -}}
{{- end -}}
{{- $ids = append $ids .id -}}
{{- end -}}
{{- if and $ids (not (has .Values.pii.currentKey $ids)) -}}
{{- fail (printf "pii.currentKey (%q) must be the id of one of pii.keys (%s)" .Values.pii.currentKey (join ", " $ids)) -}}
{{- end -}}
{{- if and .Values.pii.currentKey (not $ids) -}}
{{- fail "pii.currentKey is set but pii.keys is empty" -}}
{{- end -}}
{{- $t := .Values.kafka.tls -}}
{{- if and (not $t.enabled) (or $t.caSecret.name $t.clientSecret.name $t.serverName) -}}
{{- fail "kafka.tls.caSecret, clientSecret or serverName set while kafka.tls.enabled is false" -}}
{{- end -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- $kafkaUsers := dict "collector" (or .Values.collector.enabled .Values.collector.webhook.enabled) "shipper" .Values.shipper.enabled -}}
{{- range $prog, $on := $kafkaUsers -}}
{{- $u := index $sasl $prog -}}
{{- if and $sasl.mechanism $on (or (not $u.username) (not $u.passwordSecret.name)) -}}
{{- fail (printf "kafka.sasl.%s.username and kafka.sasl.%s.passwordSecret.name are required with kafka.sasl.mechanism" $prog $prog) -}}
{{- end -}}
{{- if and (not $sasl.mechanism) (or $u.username $u.passwordSecret.name) -}}
{{- fail (printf "kafka.sasl.%s is set but kafka.sasl.mechanism is empty (SCRAM-SHA-256 or SCRAM-SHA-512)" $prog) -}}
{{- end -}}
{{- end -}}
{{- range $prog := list "shipper" "audit" -}}
{{- $u := index $.Values.elasticsearch $prog -}}
{{- if ne (empty $u.username) (empty $u.passwordSecret.name) -}}
{{- fail (printf "elasticsearch.%s.username and elasticsearch.%s.passwordSecret.name go together" $prog $prog) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.elasticsearch.tenantAliases (not .Values.audit.tenants) -}}
{{- fail "elasticsearch.tenantAliases needs the tenants in audit.tenants" -}}
{{- end -}}
{{- with .Values.collector.webhook.tls -}}
{{- if and .clientCASecret.name (not .secretName) -}}
{{- fail "collector.webhook.tls.clientCASecret needs collector.webhook.tls.secretName (client certificates are asked over HTTPS only)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The environment of a program's ${VAR}s beyond assistlog.secretEnv
(.program: collector, webhook, shipper or audit), from existing Secrets
only; empty when none of the optional features is on. */}}
{{- define "assistlog.featureEnv" -}}
{{- $v := .root.Values -}}
{{- $kafkaUser := dict "collector" "collector" "webhook" "collector" "shipper" "shipper" -}}
{{- if and (has .program (list "collector" "webhook")) $v.pii.keys }}
- name: ASSISTLOG_PII_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $v.secrets.piiHashSecret.name | quote }}, key: {{ $v.secrets.piiHashSecret.key | quote }}}
{{- end }}
{{- if ne .program "audit" }}
{{- range $i, $k := $v.pii.keys }}
- name: ASSISTLOG_PII_KEY_{{ $i }}
  valueFrom:
    secretKeyRef: {name: {{ $k.secretName | quote }}, key: {{ $k.secretKey | quote }}}
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
{{- with (index $v.kafka.sasl (index $kafkaUser .program)).passwordSecret }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- if has .program (list "shipper" "audit") }}
{{- with (index $v.elasticsearch .program) }}{{ if .username }}
- name: ES_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .passwordSecret.name | quote }}, key: {{ .passwordSecret.key | quote }}}
{{- end }}{{ end }}
{{- end }}
{{- end -}}

{{/* Certificate files as Secret volumes, one directory each under
/etc/assistlog-certs (never subPath: kubelet then swaps a renewed Secret
in, and the programs read the new files). */}}
{{- define "assistlog.certFiles" -}}
{{- $v := .root.Values -}}
{{- $files := list -}}
{{- if and (ne .program "audit") $v.kafka.tls.enabled -}}
{{- with $v.kafka.tls.caSecret }}{{ if .name }}
{{- $files = append $files (dict "vol" "kafka-ca" "secret" .name "items" (list (dict "key" .key "path" "ca.crt"))) }}
{{- end }}{{ end }}
{{- with $v.kafka.tls.clientSecret }}{{ if .name }}
{{- $files = append $files (dict "vol" "kafka-client" "secret" .name "items" (list (dict "key" .certKey "path" "tls.crt") (dict "key" .keyKey "path" "tls.key"))) }}
{{- end }}{{ end }}
{{- end -}}
{{- if and (has .program (list "shipper" "audit")) $v.elasticsearch.caSecret.name -}}
{{- $files = append $files (dict "vol" "es-ca" "secret" $v.elasticsearch.caSecret.name "items" (list (dict "key" $v.elasticsearch.caSecret.key "path" "ca.crt"))) }}
{{- end -}}
{{- if eq .program "webhook" -}}
{{- with $v.collector.webhook.tls }}{{ if .secretName }}
{{- $files = append $files (dict "vol" "webhook" "secret" .secretName "items" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key"))) }}
{{- if .clientCASecret.name }}
{{- $files = append $files (dict "vol" "webhook-client-ca" "secret" .clientCASecret.name "items" (list (dict "key" .clientCASecret.key "path" "ca.crt"))) }}
{{- end }}
{{- end }}{{ end }}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{- define "assistlog.certMounts" -}}
{{- range (include "assistlog.certFiles" .) | fromJsonArray }}
- {name: cert-{{ .vol }}, mountPath: /etc/assistlog-certs/{{ .vol }}, readOnly: true}
{{- end }}
{{- end -}}

{{- define "assistlog.certVolumes" -}}
{{- range (include "assistlog.certFiles" .) | fromJsonArray }}
- name: cert-{{ .vol }}
  secret:
    secretName: {{ .secret | quote }}
    items: {{ toJson .items }}
    defaultMode: 288 # 0440: the pod's user and group (fsGroup) only
{{- end }}
{{- end -}}

{{/* The environment every program's ${VAR}s come from: existing Secrets only. */}}
{{- define "assistlog.secretEnv" -}}
- name: ASSISTLOG_PII_SECRET
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.piiHashSecret.name | quote }}, key: {{ .Values.secrets.piiHashSecret.key | quote }}}
{{- with .Values.secrets.elasticsearchApiKey }}{{ if .name }}
- name: ES_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}{{ end }}
{{- with .Values.secrets.bitrix24WebhookUrl }}{{ if .name }}
- name: BITRIX24_WEBHOOK_URL
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}{{ end }}
{{- end -}}

{{/* The restricted Pod Security Standard: non-root, no privilege escalation,
every capability dropped, read-only root filesystem, RuntimeDefault seccomp. */}}
{{- define "assistlog.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "assistlog.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "assistlog.probes" -}}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 10
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 20
  failureThreshold: 6
{{- end -}}
