{{/* Chart name, truncated to fit Kubernetes name limits. */}}
{{- define "telco-intent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release alone when it already contains the chart name. */}}
{{- define "telco-intent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "telco-intent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "telco-intent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telco-intent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "telco-intent.labels" -}}
helm.sh/chart: {{ include "telco-intent.chart" . }}
{{ include "telco-intent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: telco-intent
{{- end }}

{{- define "telco-intent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "telco-intent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "telco-intent.peeringName" -}}
{{- default (include "telco-intent.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "telco-intent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces whose Secrets the controller may read (get only). */}}
{{- define "telco-intent.secretNamespaces" -}}
{{- if .Values.rbac.secretNamespaces }}
{{- toJson .Values.rbac.secretNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/*
Argo CD sync waves: CRDs, RBAC and the peering object first (-2), then the controller (-1), so
custom resources (wave 0 and later) are created after it and pruned before it while it can still
release their finalizers.
*/}}
{{- define "telco-intent.waveSetup" -}}
argocd.argoproj.io/sync-wave: "-2"
{{- end }}
{{- define "telco-intent.waveController" -}}
argocd.argoproj.io/sync-wave: "-1"
{{- end }}

{{/* Rules on the cluster-scoped kinds: watched, finalized and status-patched. */}}
{{- define "telco-intent.clusterScopedRules" -}}
- apiGroups: ["telco.intent.dev"]
  resources: ["productofferings", "networkdevices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["telco.intent.dev"]
  resources: ["productofferings/status", "networkdevices/status"]
  verbs: ["patch"]
{{- end }}

{{/*
Rules on the namespaced kinds: Subscriptions are watched and finalized; their NetworkServices are
created, patched and deleted; Invoices are created at period end (never deleted: billing data);
BillingAccounts are only read (and their status written).
*/}}
{{- define "telco-intent.namespacedRules" -}}
- apiGroups: ["telco.intent.dev"]
  resources: ["subscriptions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["telco.intent.dev"]
  resources: ["networkservices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["telco.intent.dev"]
  resources: ["invoices"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["telco.intent.dev"]
  resources: ["billingaccounts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["telco.intent.dev"]
  resources: ["subscriptions/status", "networkservices/status", "invoices/status", "billingaccounts/status"]
  verbs: ["patch"]
{{- end }}

{{/* Kopf discovers the custom resources by watching CRDs (read only). */}}
{{- define "telco-intent.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "telco-intent.eventRules" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Kopf peering: watch all peering objects, but touch only our own. */}}
{{- define "telco-intent.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  resourceNames: [{{ .name | quote }}]
  verbs: ["get", "patch"]
{{- end }}
