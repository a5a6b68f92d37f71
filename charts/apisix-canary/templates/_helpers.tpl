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

{{/* The certificate mode: certManager.enabled wins, then existingSecret.name, else selfSigned. */}}
{{- define "apisix-canary.certMode" -}}
{{- if .Values.certManager.enabled -}}
certManager
{{- else if .Values.existingSecret.name -}}
existingSecret
{{- else -}}
selfSigned
{{- end -}}
{{- end -}}

{{/* The Secret with tls.crt and tls.key: mounted (certManager, existingSecret), or kept by the server (selfSigned). */}}
{{- define "apisix-canary.tlsSecret" -}}
{{- $mode := include "apisix-canary.certMode" . -}}
{{- if eq $mode "existingSecret" -}}
{{ .Values.existingSecret.name }}
{{- else if eq $mode "selfSigned" -}}
{{ .Values.selfSigned.secretName | default (printf "%s-tls" (include "apisix-canary.fullname" .)) }}
{{- else -}}
{{ include "apisix-canary.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{/* Metadata shared by both webhook configurations: the cainjector annotation. */}}
{{- define "apisix-canary.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "apisix-canary.fullname" . }}
{{- end }}
{{- end -}}

{{/* clientConfig of the webhook at path (the dict's "path"); "kind" and "webhook" name it,
so that in the selfSigned mode an upgrade keeps the caBundle the server wrote (lookup is
empty in `helm template`: the server writes it within one reload interval). */}}
{{- define "apisix-canary.clientConfig" -}}
{{- $root := .root -}}
{{- $mode := include "apisix-canary.certMode" $root -}}
{{- $caBundle := "" -}}
{{- if eq $mode "existingSecret" -}}
{{- $caBundle = $root.Values.existingSecret.caBundle -}}
{{- else if eq $mode "selfSigned" -}}
{{- $live := lookup "admissionregistration.k8s.io/v1" .kind "" (include "apisix-canary.fullname" $root) -}}
{{- range ($live.webhooks | default list) -}}
{{- if and (eq .name $.webhook) .clientConfig.caBundle -}}
{{- $caBundle = .clientConfig.caBundle -}}
{{- end -}}
{{- end -}}
{{- end }}
clientConfig:
  {{- with $caBundle }}
  caBundle: {{ . }}
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
