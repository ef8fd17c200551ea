{{/* Names of every object of the chart, in one place. */}}
{{- define "gpu-commons.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gpu-commons.hub" -}}{{ include "gpu-commons.fullname" . }}-hub{{- end -}}
{{- define "gpu-commons.quota" -}}{{ include "gpu-commons.fullname" . }}-quota{{- end -}}
{{- define "gpu-commons.proxy" -}}{{ include "gpu-commons.fullname" . }}-proxy{{- end -}}
{{- define "gpu-commons.proxyApi" -}}{{ include "gpu-commons.fullname" . }}-proxy-api{{- end -}}
{{- define "gpu-commons.alliance" -}}{{ include "gpu-commons.fullname" . }}-alliance{{- end -}}
{{- define "gpu-commons.secret" -}}{{ include "gpu-commons.fullname" . }}-secret{{- end -}}

{{- define "gpu-commons.labels" -}}
app.kubernetes.io/name: gpu-commons
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "hub") */}}
{{- define "gpu-commons.selector" -}}
app.kubernetes.io/name: gpu-commons
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gpu-commons.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* A token kept across upgrades: the value given, else the one in the live Secret, else a new one. */}}
{{- define "gpu-commons.token" -}}
{{- $given := index .root.Values.secrets .key -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace (include "gpu-commons.secret" .root) -}}
{{- if $given -}}
{{ $given | b64enc }}
{{- else if and $live (index $live.data .key) -}}
{{ index $live.data .key }}
{{- else -}}
{{ randAlphaNum 64 | b64enc }}
{{- end -}}
{{- end -}}

{{/* Namespaces the hub creates workspaces in: the release's and those of the pools. */}}
{{- define "gpu-commons.workspaceNamespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- range $id, $pool := .Values.pools -}}
{{- if $pool.namespace -}}{{- $namespaces = append $namespaces $pool.namespace -}}{{- end -}}
{{- end -}}
{{ $namespaces | uniq | toJson }}
{{- end -}}

{{/* A NetworkPolicy peer: the pods of one component of this release, seen from any namespace:
     (dict "root" $ "component" "hub") */}}
{{- define "gpu-commons.peer" -}}
- namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: {{ .root.Release.Namespace }}}
  podSelector:
    matchLabels:
      {{- include "gpu-commons.selector" . | nindent 6 }}
{{- end -}}

{{/* The pods of the hub or the proxy that the quota service serves: this release's, or beside
     zero-to-jupyterhub that release's (labels app=jupyterhub, release, component):
     (dict "root" $ "component" "hub") */}}
{{- define "gpu-commons.hubPeer" -}}
{{- if .root.Values.zeroToJupyterHub.enabled -}}
- podSelector:
    matchLabels: {app: jupyterhub, release: {{ .root.Values.zeroToJupyterHub.release }}, component: {{ .component }}}
{{- else -}}
{{ include "gpu-commons.peer" . }}
{{- end -}}
{{- end -}}

{{/* The students' workspace pods: KubeQuotaSpawner's servers, labelled with their pool. */}}
{{- define "gpu-commons.workspacePods" -}}
matchLabels:
  component: singleuser-server
matchExpressions:
  - {key: gpu-commons/pool, operator: Exists}
{{- end -}}

{{/* NetworkPolicy peers: the workspaces in every namespace the hub starts them in. */}}
{{- define "gpu-commons.workspacePeers" -}}
{{- range $namespace := include "gpu-commons.workspaceNamespaces" . | fromJsonArray }}
- namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: {{ $namespace }}}
  podSelector:
    {{- include "gpu-commons.workspacePods" $ | nindent 4 }}
{{- end }}
{{- end -}}

{{/* The components the disruption budget covers: the hub and the proxy when this release runs them,
     the quota service unless it runs a standby (never ready). */}}
{{- define "gpu-commons.budgeted" -}}
{{- $components := list -}}
{{- if not .Values.zeroToJupyterHub.enabled -}}{{- $components = list "hub" "proxy" -}}{{- end -}}
{{- if eq (int .Values.quota.replicas) 1 -}}{{- $components = append $components "quota" -}}{{- end -}}
[{{ join ", " $components }}]
{{- end -}}
