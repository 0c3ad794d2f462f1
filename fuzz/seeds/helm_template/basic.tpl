{{- define "x.name" -}}{{ .Values.name | trunc 63 | trimSuffix "-" }}{{- end -}}
name: {{ include "x.name" . }}
{{- range $k, $v := .Values.labels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{ toYaml .Values.list | nindent 2 }}
{{ if gt (len .Values.list) 2 }}{{ printf "%d-%s" .Values.replicas .Release.Name }}{{ else }}{{ fail "no" }}{{ end }}
