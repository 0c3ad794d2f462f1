{{- $d := dict "a" 1 "b" (list 1 2 3) }}{{- range $k, $v := .labels }}{{ $k }}={{ $v | quote }}{{ end }}
{{ printf "%05.2f|%x|%q" 3.14159 255 "s" }} {{ 0x1p4 }} {{ regexMatch "^[\\w-\\.]+$" .name }}
{{ toJson $d }} {{ until 5 | join "," }} {{ .missing | default "d" | upper | }}
{{- define "x" }}{{ . }}{{ end }}{{ template "x" (merge $d (dict "c" 2.5e-08)) }}
{{ range $i, $e := .list }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $e }}{{ end }}
