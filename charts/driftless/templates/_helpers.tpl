{{/* Chart name. */}}
{{- define "driftless.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object the chart creates. */}}
{{- define "driftless.fullname" -}}
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

{{/* Selector labels. */}}
{{- define "driftless.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftless.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "driftless.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "driftless.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "driftless.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "driftless.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the shared webhook Secret, empty when none is mounted. */}}
{{- define "driftless.webhookSecretName" -}}
{{- if .Values.webhook.secret.existingSecret }}
{{- .Values.webhook.secret.existingSecret }}
{{- else if .Values.webhook.secret.create }}
{{- printf "%s-webhook" (include "driftless.fullname" .) }}
{{- end }}
{{- end }}

{{/* "true" when a client CA for mutual TLS is mounted; fails on settings that cannot work. */}}
{{- define "driftless.webhookClientCA" -}}
{{- with .Values.webhook.tls.clientCA }}
{{- if and .configMapName .secretName }}
{{- fail "webhook.tls.clientCA: set configMapName or secretName, not both" }}
{{- end }}
{{- if or .configMapName .secretName }}
{{- if not $.Values.webhook.tls.secretName }}
{{- fail "webhook.tls.clientCA needs webhook.tls.secretName: mutual TLS is served over HTTPS only" }}
{{- end }}
{{- if not .key }}
{{- fail "webhook.tls.clientCA.key must name the key holding the CA bundle" }}
{{- end }}
{{- "true" }}
{{- end }}
{{- end }}
{{- end }}
