{{/*
Names. Kubernetes names are at most 63 characters (DNS-1123 labels), so every name is
truncated to 63 and stripped of a trailing "-". Suffixed names truncate the prefix first so
the suffix survives.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "rocky.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: fullnameOverride, or "<release>-<name>" unless the release name
already contains the name.
*/}}
{{- define "rocky.fullname" -}}
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

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list . "suffix"). */}}
{{- define "rocky.suffixedName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $prefix := include "rocky.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "rocky.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod; never change them on upgrade (selectors are immutable). */}}
{{- define "rocky.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rocky.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "rocky.labels" -}}
helm.sh/chart: {{ include "rocky.chart" . }}
{{ include "rocky.selectorLabels" . }}
app.kubernetes.io/version: {{ include "rocky.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rocky
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Tag of the operator image: image.tag or the chart's appVersion. */}}
{{- define "rocky.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Full reference of the operator image; a digest pins it. */}}
{{- define "rocky.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "rocky.imageTag" .) }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "rocky.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rocky.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The runner pods' ServiceAccount name. */}}
{{- define "rocky.runnerServiceAccountName" -}}
{{- if .Values.runner.serviceAccount.create }}
{{- default (include "rocky.suffixedName" (list . "runner")) .Values.runner.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.runner.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the metrics Service; it is also the Prometheus job name a ServiceMonitor produces. */}}
{{- define "rocky.metricsServiceName" -}}
{{- include "rocky.suffixedName" (list . "metrics") }}
{{- end }}

{{/* Namespaces with a runner ServiceAccount: the release namespace and every watched namespace. */}}
{{- define "rocky.runnerNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- range .Values.watchNamespaces }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- $namespaces | uniq | toJson }}
{{- end }}

{{/*
PromQL label matchers selecting this operator's series in the alert rules:
prometheusRule.selector, or the job a ServiceMonitor on the metrics Service produces. Not the
namespace: on rocky_* series `namespace` is the RockyRun's namespace (the ServiceMonitor
honors the operator's labels), not the operator's.
*/}}
{{- define "rocky.alertSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "job=%q" (include "rocky.metricsServiceName" .) }}
{{- end }}
{{- end }}
