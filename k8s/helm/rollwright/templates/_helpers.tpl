{{/* Named templates shared by the rollwright chart's manifests (names, labels, image). */}}

{{- define "rollwright.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped prefix: "rollwright" for a release named rollwright, "<release>-rollwright" otherwise. */}}
{{- define "rollwright.fullname" -}}
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

{{/* Name of the worker's namespaced objects (Deployment, Service, HPA, PDB, NetworkPolicy). */}}
{{- define "rollwright.workerName" -}}
{{- printf "%s-worker" (include "rollwright.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Same selector label as k8s/base, plus the release so two releases never select each other's pods. */}}
{{- define "rollwright.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollwright.name" . }}-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rollwright.labels" -}}
{{ include "rollwright.selectorLabels" . }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: rollwright
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rollwright.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rollwright.workerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rollwright.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Port of temporal.address: the NetworkPolicy opens exactly what the worker dials. */}}
{{- define "rollwright.temporalPort" -}}
{{- splitList ":" .Values.temporal.address | last }}
{{- end }}
