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
