{{/* Name of every object; the CRDs' conversion webhook expects "apisix-canary". */}}
{{- define "apisix-canary.fullname" -}}
{{- .Values.fullnameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "apisix-canary.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apisix-canary.labels" -}}
{{ include "apisix-canary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret with tls.crt and tls.key the pods mount. */}}
{{- define "apisix-canary.tlsSecret" -}}
{{- if .Values.certManager.enabled -}}
{{ include "apisix-canary.fullname" . }}-tls
{{- else -}}
{{ required "existingSecret.name is required when certManager.enabled is false" .Values.existingSecret.name }}
{{- end -}}
{{- end -}}

{{/* Metadata shared by both webhook configurations: the cainjector annotation. */}}
{{- define "apisix-canary.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "apisix-canary.fullname" . }}
{{- end }}
{{- end -}}

{{/* clientConfig of the webhook at path (the dict's "path"). */}}
{{- define "apisix-canary.clientConfig" -}}
{{- $root := .root -}}
clientConfig:
  {{- if and (not $root.Values.certManager.enabled) $root.Values.existingSecret.caBundle }}
  caBundle: {{ $root.Values.existingSecret.caBundle }}
  {{- end }}
  service:
    name: {{ include "apisix-canary.fullname" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end -}}

{{/* Deployments only outside kube-system and our namespace, narrowed by the values. */}}
{{- define "apisix-canary.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
    - kube-system
    - {{ .Release.Namespace }}
  {{- with .Values.webhooks.namespaceSelector.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with .Values.webhooks.namespaceSelector.matchLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
