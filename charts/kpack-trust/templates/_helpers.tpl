{{/*
Names, labels and small computed values shared by the templates. Names are cut at 63 characters
(the DNS label limit) before a suffix is added, so suffixed names stay within it too.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "kpack-trust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" unless the release name already holds the chart name, or fullnameOverride. */}}
{{- define "kpack-trust.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "kpack-trust.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; pass (dict "ctx" $ "component" "verifier"). */}}
{{- define "kpack-trust.labels" -}}
helm.sh/chart: {{ include "kpack-trust.chart" .ctx }}
{{ include "kpack-trust.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kpack-trust
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels Deployments and Services select on; they never change after install. */}}
{{- define "kpack-trust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kpack-trust.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
"<base><suffix>" within 63 characters; pass (list base suffix). A longer one has its base cut before
the suffix, followed by 6 hex digits of the base's sha256: two long bases that differ only
past the cut still get different names, which cluster-scoped objects (ClusterRoles) need.
*/}}
{{- define "kpack-trust.suffixedName" -}}
{{- $base := index . 0 }}
{{- $suffix := index . 1 }}
{{- if le (add (len $base) (len $suffix)) 63 }}
{{- printf "%s%s" $base $suffix }}
{{- else }}
{{- printf "%s-%s%s" ($base | trunc (int (sub 56 (len $suffix))) | trimSuffix "-") ($base | sha256sum | trunc 6) $suffix }}
{{- end }}
{{- end }}

{{/* "<fullname>-verifier": Deployment, Service, ConfigMap, PDB, NetworkPolicy, ServiceMonitor. */}}
{{- define "kpack-trust.verifier.fullname" -}}
{{- printf "%s-verifier" (include "kpack-trust.fullname" .) }}
{{- end }}

{{/* The verifier's ServiceAccount name. */}}
{{- define "kpack-trust.verifier.serviceAccountName" -}}
{{- if .Values.verifier.serviceAccount.create }}
{{- default (include "kpack-trust.verifier.fullname" .) .Values.verifier.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.verifier.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate: existingSecret, or the one cert-manager writes. */}}
{{- define "kpack-trust.verifier.tlsSecretName" -}}
{{- default (include "kpack-trust.suffixedName" (list (include "kpack-trust.verifier.fullname" .) "-tls")) .Values.verifier.tls.existingSecret }}
{{- end }}

{{/* Host of the webhook URL: verifier.webhook.host, else the Service's cluster DNS name. */}}
{{- define "kpack-trust.verifier.webhookHost" -}}
{{- default (printf "%s.%s.svc" (include "kpack-trust.verifier.fullname" .) .Release.Namespace) .Values.verifier.webhook.host }}
{{- end }}

{{/* The URL kube-apiserver POSTs ImageReviews to. */}}
{{- define "kpack-trust.verifier.webhookURL" -}}
{{- $port := int .Values.verifier.service.port }}
{{- $host := include "kpack-trust.verifier.webhookHost" . }}
{{- if and (contains ":" $host) (not (hasPrefix "[" $host)) }}
{{- $host = printf "[%s]" $host }}
{{- end }}
{{- if eq $port 443 }}
{{- printf "https://%s%s" $host .Values.verifier.webhook.path }}
{{- else }}
{{- printf "https://%s:%d%s" $host $port .Values.verifier.webhook.path }}
{{- end }}
{{- end }}

{{/*
registry/repository:tag or @digest; pass (dict "image" .Values.x.image "ctx" $ "what" "x.image").
The repository has no default: a short name would resolve to a Docker Hub namespace nobody here owns.
*/}}
{{- define "kpack-trust.image" -}}
{{- $what := default "verifier.image / signer.image" .what }}
{{- $repository := required (printf "%s.repository is required: the image as pushed to your registry, e.g. registry.example.com/platform/kpack-trust-%s (no public image is published; build it with the repository's Dockerfile)" $what (ternary "signer" "verifier" (hasPrefix "signer" $what))) .image.repository }}
{{- if .image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .image.registry) .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* imagePullSecrets entries from a list of names or {name} objects. */}}
{{- define "kpack-trust.imagePullSecrets" -}}
{{- range . }}
{{- if kindIs "string" . }}
- name: {{ . }}
{{- else }}
- name: {{ .name }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the pod sees the chart's files. */}}
{{- define "kpack-trust.verifier.configDir" -}}/etc/kpack-trust/config{{- end }}
{{- define "kpack-trust.verifier.tlsDir" -}}/etc/kpack-trust/tls{{- end }}
{{- define "kpack-trust.verifier.credentialsDir" -}}/etc/kpack-trust/notary-credentials{{- end }}

{{/* True ("true") when a notary CA value is PEM text the chart writes into the ConfigMap. */}}
{{- define "kpack-trust.isPem" -}}
{{- if contains "-----BEGIN" . }}true{{ end }}
{{- end }}

{{/*
The ConfigMap's CA files: a map of file name -> PEM for every notary entry whose ca is PEM text,
and client-ca.crt under mutual TLS. Rendered as YAML so callers can fromYaml it.
*/}}
{{- define "kpack-trust.verifier.files" -}}
{{- $files := dict }}
{{- range $i, $n := .Values.verifier.notary }}
{{- if and $n.ca (include "kpack-trust.isPem" $n.ca) }}
{{- $_ := set $files (printf "notary-ca-%d.crt" $i) $n.ca }}
{{- end }}
{{- end }}
{{- if .Values.verifier.tls.clientCA }}
{{- $_ := set $files "client-ca.crt" .Values.verifier.tls.clientCA }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
The namespaces the verifier admits unchecked: verifier.config.exemptNamespaces, then what the
verifier itself depends on — the release namespace (its own pods, the config-check hook) and
cert-manager's namespace when cert-manager issues its certificate. Exemptions live in the
verifier, so these are what must be able to start while the verifier is being (re)created.
*/}}
{{- define "kpack-trust.verifier.exemptNamespaces" -}}
{{- $v := .Values.verifier }}
{{- $exempt := default (list) $v.config.exemptNamespaces }}
{{- if and $v.exemptReleaseNamespace (not (has .Release.Namespace $exempt)) }}
{{- $exempt = append $exempt .Release.Namespace }}
{{- end }}
{{- $cm := $v.tls.certManager }}
{{- if and $cm.enabled $cm.namespace (not (has $cm.namespace $exempt)) }}
{{- $exempt = append $exempt $cm.namespace }}
{{- end }}
{{- toYaml $exempt }}
{{- end }}

{{/*
The namespaces the admission webhooks are never called for: kube-system and the release namespace
(the verifier's own pods cannot wait for the verifier), every exact name the verifier exempts
(kpack-trust.verifier.exemptNamespaces, cert-manager's namespace included) and
admission.webhooks.excludeNamespaces. The exemptions must be mirrored here because they live in the
verifier: with failurePolicy Fail, a verifier that cannot be reached refuses every namespace the
selector sends it, so cert-manager could not recreate the cainjector that renews the verifier's
certificate. A namespaceSelector matches names exactly; globs are left to the verifier (NOTES.txt
names them).
*/}}
{{- define "kpack-trust.webhook.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace }}
{{- $exempt := include "kpack-trust.verifier.exemptNamespaces" . | fromYamlArray }}
{{- range concat $exempt (default (list) .Values.admission.webhooks.excludeNamespaces) }}
{{- if and (include "kpack-trust.isNamespaceName" .) (not (has . $excluded)) }}
{{- $excluded = append $excluded . }}
{{- end }}
{{- end }}
{{- toYaml $excluded }}
{{- end }}

{{/* True ("true") when . is a namespace name (a DNS label), not a glob. */}}
{{- define "kpack-trust.isNamespaceName" -}}
{{- if and (le (len .) 63) (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}true{{ end }}
{{- end }}

{{/* True ("true") when namespace .ns matches one of the globs in .globs (the verifier's * and ?). */}}
{{- define "kpack-trust.matchesNamespaceGlob" -}}
{{- $ns := .ns }}
{{- range .globs }}
{{- $re := printf "^%s$" (. | replace "." "\\." | replace "*" ".*" | replace "?" ".") }}
{{- if regexMatch $re $ns }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The verifier's config.yaml. listen and notary are the chart's (paths inside the pod); the policy is
verifier.config as written. A comment carries the digest of the CA files next to it: the verifier
reloads when config.yaml changes, so a CA-only change must change config.yaml too.
*/}}
{{- define "kpack-trust.verifier.config" -}}
{{- $files := include "kpack-trust.verifier.files" . | fromYaml }}
{{- $cfg := deepCopy .Values.verifier.config }}
{{- $_ := set $cfg "exemptNamespaces" (include "kpack-trust.verifier.exemptNamespaces" . | fromYamlArray) }}
{{- $tls := dict "cert" (printf "%s/tls.crt" (include "kpack-trust.verifier.tlsDir" .)) "key" (printf "%s/tls.key" (include "kpack-trust.verifier.tlsDir" .)) }}
{{- if .Values.verifier.tls.clientCA }}
{{- $_ := set $tls "clientCA" "client-ca.crt" }}
{{- end }}
{{- $notary := list }}
{{- range $i, $n := .Values.verifier.notary }}
{{- $entry := dict "registry" $n.registry "server" $n.server }}
{{- if $n.ca }}
{{- if include "kpack-trust.isPem" $n.ca }}
{{- $_ := set $entry "ca" (printf "notary-ca-%d.crt" $i) }}
{{- else }}
{{- $_ := set $entry "ca" $n.ca }}
{{- end }}
{{- end }}
{{- if $n.timeoutMs }}
{{- $_ := set $entry "timeoutMs" $n.timeoutMs }}
{{- end }}
{{- with $n.credentialsSecret }}
{{- $_ := set $entry "credentials" (printf "%s/%d/%s" (include "kpack-trust.verifier.credentialsDir" $) $i (default ".dockerconfigjson" .key)) }}
{{- end }}
{{- $notary = append $notary $entry }}
{{- end }}
{{- $doc := merge (dict "listen" (dict "port" (int .Values.verifier.port) "tls" $tls) "notary" $notary) $cfg }}
# Rendered by the kpack-trust chart from verifier.notary, verifier.tls and verifier.config.
{{- if $files }}
# CA files (sha256 of their contents; a change here makes the verifier reload): {{ toYaml $files | sha256sum }}
{{- end }}
{{ toYaml $doc }}
{{- end }}

{{/* The data of the verifier's ConfigMap (and of the config-check hook's copy of it). */}}
{{- define "kpack-trust.verifier.configMapData" -}}
config.yaml: |
  {{- include "kpack-trust.verifier.config" . | trim | nindent 2 }}
{{- range $name, $pem := include "kpack-trust.verifier.files" . | fromYaml }}
{{ $name }}: |
  {{- $pem | trim | nindent 2 }}
{{- end }}
{{- end }}

{{/* "<fullname>-signer": the signer's Role, RoleBinding and ConfigMap in each build namespace. */}}
{{- define "kpack-trust.signer.fullname" -}}
{{- printf "%s-signer" (include "kpack-trust.fullname" .) }}
{{- end }}

{{/* The ServiceAccount builds run as. */}}
{{- define "kpack-trust.signer.serviceAccountName" -}}
{{- if .Values.signer.serviceAccount.create }}
{{- default (include "kpack-trust.signer.fullname" .) .Values.signer.serviceAccount.name }}
{{- else }}
{{- required "signer.serviceAccount.name is required when signer.serviceAccount.create is false" .Values.signer.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The build namespaces: signer.namespaces (none by default). */}}
{{- define "kpack-trust.signer.namespaces" -}}
{{- toYaml (default (list) .Values.signer.namespaces | uniq) }}
{{- end }}
