{{/*
Checks that span several values, which values.schema.json cannot express; each failure says what
to change.
*/}}
{{- define "kpack-trust.validate" -}}
{{- $v := .Values.verifier }}
{{- if $v.enabled }}
{{- if and $v.tls.existingSecret $v.tls.certManager.enabled }}
{{- fail "verifier.tls: set either existingSecret or certManager.enabled, not both" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) }}
{{- fail "verifier.tls.certManager.issuerRef.name is required when certManager.enabled is true" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (ne (toString $v.podDisruptionBudget.minAvailable) "") (ne (toString $v.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "verifier.podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- /* kube-apiserver presents a client certificate to admission webhooks only when each control-plane
host has a WebhookAdmissionConfiguration kubeconfig for it, which managed clusters do not offer:
under mutual TLS every /mutate and /validate call would fail its handshake, and failurePolicy Fail
would refuse every pod. */}}
{{- if and $v.tls.clientCA (ne .Values.admission.mode "imagePolicyWebhook") }}
{{- fail (printf "verifier.tls.clientCA (mutual TLS) cannot be used with admission.mode %s: kube-apiserver sends admission webhooks no client certificate unless every control-plane host configures one (a WebhookAdmissionConfiguration kubeconfig, which managed clusters do not offer), so every pod would be refused; unset verifier.tls.clientCA, or use admission.mode imagePolicyWebhook" .Values.admission.mode) }}
{{- end }}
{{- if ge (int $v.drainSeconds) (int $v.terminationGracePeriodSeconds) }}
{{- fail "verifier.drainSeconds must be less than verifier.terminationGracePeriodSeconds, or the pod is killed while draining" }}
{{- end }}
{{- /* kube-apiserver's imagepolicy config: 0 means "its default", so a 0 here would print one number
and run another; -1 and the ranges are checked by values.schema.json. */}}
{{- range $key, $default := dict "allowTTL" "300" "denyTTL" "30" "retryBackoff" "500" }}
{{- if eq (int (index $v.webhook $key)) 0 }}
{{- fail (printf "verifier.webhook.%s: 0 makes kube-apiserver silently use its default (%s); write %s, or -1 to turn it off" $key $default $default) }}
{{- end }}
{{- end }}
{{- /* The verifier's own rule checks (verifier/src/config/parse.ts), so a policy it would refuse
fails here rather than in new pods after the upgrade. */}}
{{- range $i, $r := $v.config.rules }}
{{- $trusting := or (hasKey $r "trust") $r.tofu }}
{{- $chosen := 0 }}
{{- range (list $r.allow $r.deny $trusting) }}
{{- if . }}{{ $chosen = add1 $chosen }}{{ end }}
{{- end }}
{{- if ne $chosen 1 }}
{{- fail (printf "verifier.config.rules[%d] (%v): needs exactly one of allow: true, deny: true or trust: {...} (or tofu: true)" $i $r.images) }}
{{- end }}
{{- if $trusting }}
{{- $t := default dict $r.trust }}
{{- if not (or $r.tofu $t.tofu $t.rootKeys $t.rootKeysPem $t.ca) }}
{{- fail (printf "verifier.config.rules[%d] (%v): trust pins no root key, certificate or CA; add trust.rootKeys, rootKeysPem or ca (or tofu: true to trust the first root seen)" $i $r.images) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* A budget that allows no eviction blocks `kubectl drain` of every node holding a verifier pod. */}}
{{- $pdb := $v.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- if and (eq (toString $pdb.minAvailable) "") (eq (toString $pdb.maxUnavailable) "") }}
{{- fail "verifier.podDisruptionBudget: set minAvailable or maxUnavailable (the default is maxUnavailable: 1)" }}
{{- end }}
{{- if regexMatch "^0+%?$" (toString $pdb.maxUnavailable) }}
{{- fail "verifier.podDisruptionBudget.maxUnavailable: 0 allows no eviction, so kubectl drain never finishes; use 1" }}
{{- end }}
{{- /* The pods minAvailable keeps up, as the disruption controller computes it: an integer (a number or
a string of digits, which the PDB takes as a count too), or a percentage of the replicas rounded
up (GetScaledValueFromIntOrPercent with roundUp). Keeping every replica up allows no eviction. */}}
{{- $replicas := int $v.replicaCount }}
{{- $min := toString $pdb.minAvailable }}
{{- $kept := 0 }}
{{- if regexMatch "^[0-9]+$" $min }}
{{- $kept = atoi $min }}
{{- else if regexMatch "^[0-9]+%$" $min }}
{{- $kept = div (add (mul (atoi (trimSuffix "%" $min)) $replicas) 99) 100 }}
{{- end }}
{{- if ge $kept $replicas }}
{{- fail (printf "verifier.podDisruptionBudget.minAvailable %s with replicaCount %d keeps %d pods up, which allows no eviction, so kubectl drain never finishes; use maxUnavailable: 1" $min $replicas $kept) }}
{{- end }}
{{- end }}
{{- /* Prometheus must be able to reach /metrics and read the CA it verifies the verifier with. */}}
{{- $sm := $v.serviceMonitor }}
{{- if and $sm.enabled $v.networkPolicy.enabled $v.networkPolicy.ingressFrom (not $v.networkPolicy.metricsFrom) }}
{{- fail "verifier.networkPolicy.ingressFrom admits only the listed peers and serviceMonitor is enabled: add Prometheus (e.g. its namespaceSelector and podSelector) to verifier.networkPolicy.metricsFrom, or it cannot scrape /metrics" }}
{{- end }}
{{- if and $sm.enabled $sm.namespace (ne $sm.namespace $.Release.Namespace) (not $sm.tlsConfig) (not $v.tls.caBundle) }}
{{- fail (printf "verifier.serviceMonitor.namespace %s: Prometheus reads the scrape CA in the ServiceMonitor's namespace, where the TLS Secret of namespace %s is not; set verifier.tls.caBundle (the chart writes it to a ConfigMap there) or verifier.serviceMonitor.tlsConfig" $sm.namespace $.Release.Namespace) }}
{{- end }}
{{- $registries := dict }}
{{- range $v.notary }}
{{- /* The verifier's REGISTRY pattern (verifier/src/config/parse.ts). */}}
{{- if not (regexMatch "^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$" .registry) }}
{{- fail (printf "verifier.notary: registry %q must be a registry host[:port] as it appears in image names (docker.io, registry.example.com:5000), without https:// or a path; the notary URL goes in server" .registry) }}
{{- end }}
{{- if hasKey $registries .registry }}
{{- fail (printf "verifier.notary: registry %s is listed twice" .registry) }}
{{- end }}
{{- $_ := set $registries .registry true }}
{{- end }}
{{- end }}
{{- /* The controller reads a Build's registry Secrets where it watches; watching every namespace
would make that get on every Secret in the cluster, which must be asked for by name. */}}
{{- $c := .Values.signer.controller }}
{{- if and $c.enabled (eq $c.buildCredentials "service-account") (not $c.watchNamespaces) (not $c.buildCredentialsClusterWide) }}
{{- fail "signer.controller: buildCredentials service-account with watchNamespaces [] would let the controller get every Secret in the cluster; list the build namespaces in signer.controller.watchNamespaces (a Role in each), set signer.controller.buildCredentials=controller, or grant it cluster-wide with signer.controller.buildCredentialsClusterWide=true" }}
{{- end }}
{{- /* At SIGTERM the leader finishes the Build in hand, which may take up to signTimeoutSeconds, then
releases the Lease; a grace period no longer than that lets the kubelet kill it mid-publish. */}}
{{- if and $c.enabled (le (int $c.terminationGracePeriodSeconds) (int $c.signTimeoutSeconds)) }}
{{- fail (printf "signer.controller.terminationGracePeriodSeconds (%d) must be greater than signer.controller.signTimeoutSeconds (%d), or a Build still being signed at SIGTERM is killed before it is published and the Lease released" (int $c.terminationGracePeriodSeconds) (int $c.signTimeoutSeconds)) }}
{{- end }}
{{- /* Build pods hold a token that may create Secrets: never where the verifier checks nothing. The
release namespace (its Role would reach the controller's key Secrets there) and kube-system are
refused even without a verifier in this release or an exemption naming them; with the admission
webhooks, so is every namespace they leave out (the verifier is never asked there). */}}
{{- if .Values.signer.enabled }}
{{- $unchecked := list "kube-system" .Release.Namespace }}
{{- $exempt := list }}
{{- if $v.enabled }}
{{- $exempt = include "kpack-trust.verifier.exemptNamespaces" . | fromYamlArray }}
{{- if ne .Values.admission.mode "imagePolicyWebhook" }}
{{- $unchecked = concat $unchecked (include "kpack-trust.webhook.excludedNamespaces" . | fromYamlArray) }}
{{- end }}
{{- end }}
{{- range .Values.signer.namespaces }}
{{- if or (has . $unchecked) (include "kpack-trust.matchesNamespaceGlob" (dict "ns" . "globs" $exempt)) }}
{{- fail (printf "signer.namespaces: %s is exempt from the verifier (or is kube-system, the release namespace, or left out of the admission webhooks): builds there would run unchecked images with create on Secrets; run builds in a namespace the verifier checks" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
