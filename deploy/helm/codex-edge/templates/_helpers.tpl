{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "codex-edge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "codex-edge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "codex-edge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codex-edge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "codex-edge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "codex-edge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: edge
app.kubernetes.io/part-of: codex
{{- end }}

{{- define "codex-edge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "codex-edge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "codex-edge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The variables the chart sets itself; extraEnv may not replace them. */}}
{{- define "codex-edge.reservedEnv" -}}
CODEX_LISTEN CODEX_ADMIN_LISTEN CODEX_ADMIN_TOKEN CODEX_DATA_DIR CODEX_DATABASE_URL CODEX_DATABASE_APP_ROLE CODEX_REDIS_URL CODEX_TLS_CERT CODEX_TLS_KEY CODEX_KEK CODEX_BYOK_KEY CODEX_BYOK_KEY_FILE CODEX_BYOK_PREVIOUS_KEYS CODEX_UPSTREAM_CONNECT_TIMEOUT CODEX_UPSTREAM_HEADER_TIMEOUT CODEX_UPSTREAM_IDLE_TIMEOUT CODEX_MAX_BODY_BYTES CODEX_TELEMETRY_WINDOW CODEX_LOG_LEVEL CODEX_SHARE_METRICS CODEX_CONTROLPLANE_URL CODEX_ENROLLMENT_TOKEN AWS_ENDPOINT_URL_KMS
{{- end }}
