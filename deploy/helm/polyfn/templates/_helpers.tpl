{{/* Names and labels, one place. */}}
{{- define "polyfn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "polyfn.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "polyfn.labels" -}}
{{ include "polyfn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "polyfn.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding admin.key and node.key: the user's, or the chart's own. */}}
{{- define "polyfn.keysSecret" -}}
{{- .Values.keys.existingSecret | default (printf "%s-keys" (include "polyfn.fullname" .)) -}}
{{- end -}}

{{/* The chart's Secret for connection settings (database URL, S3 credentials). */}}
{{- define "polyfn.settingsSecret" -}}
{{- printf "%s-settings" (include "polyfn.fullname" .) -}}
{{- end -}}

{{/* Whether the workload is a cluster of several pods (PodDisruptionBudget, HPA). */}}
{{- define "polyfn.scaled" -}}
{{- if and .Values.cluster.enabled (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) -}}true{{- end -}}
{{- end -}}

{{/* Checks values.schema.json cannot express; called by the Deployment, so `helm template` fails early. */}}
{{- define "polyfn.validate" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.cluster.enabled .Values.keys.existingSecret (or .Values.keys.adminKey .Values.keys.nodeKey) -}}
{{- fail "keys: give keys.existingSecret or keys.adminKey/nodeKey, not both" -}}
{{- end -}}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) -}}
{{- fail "persistence is one node's volume (ReadWriteOnce): a cluster keeps its state in PostgreSQL, NATS and S3" -}}
{{- end -}}
{{- end -}}
