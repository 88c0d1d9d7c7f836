{{/* Names, labels and the values both planes derive from. */}}

{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.controlplane" -}}{{ include "tollgate.fullname" . }}-controlplane{{- end -}}
{{- define "tollgate.dataplane" -}}{{ include "tollgate.fullname" . }}-dataplane{{- end -}}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tollgate.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tollgate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "tollgate.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* --workers: dataPlane.workers, else the whole cores of the CPU request ("2", 2, "1500m"), at least 1. */}}
{{- define "tollgate.workers" -}}
{{- $dp := .Values.dataPlane -}}
{{- if $dp.workers -}}
{{- int $dp.workers -}}
{{- else -}}
{{- $cpu := toString (dig "requests" "cpu" "1" ($dp.resources | default dict)) -}}
{{- $cores := 0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $cores = div (atoi (trimSuffix "m" $cpu)) 1000 -}}
{{- else -}}
{{- $cores = int (floor (float64 $cpu)) -}}
{{- end -}}
{{- max $cores 1 -}}
{{- end -}}
{{- end -}}

{{/* The pod's grace: preStop sleep + drain + in-flight grace + the usage flush's bound (20 s). */}}
{{- define "tollgate.terminationGrace" -}}
{{- $d := .Values.dataPlane.drain -}}
{{- add (int $d.preStopSleepSeconds) (int (ceil $d.drainSeconds)) (int (ceil $d.gracefulSeconds)) 20 -}}
{{- end -}}

{{- define "tollgate.podAnnotations.metrics" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "tollgate.requireSecret" -}}
{{- if not .name -}}
{{- fail (printf "%s: name an existing Secret (the chart holds no secret values)" .what) -}}
{{- end -}}
{{- end -}}
