{{/*
Checks that span several values, which values.schema.json cannot express; each failure says what
to change.
*/}}
{{- define "kpack-trust.validate" -}}
{{- $v := .Values.verifier }}
{{- if and $v.tls.existingSecret $v.tls.certManager.enabled }}
{{- fail "verifier.tls: set either existingSecret or certManager.enabled, not both" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) }}
{{- fail "verifier.tls.certManager.issuerRef.name is required when certManager.enabled is true" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (ne (toString $v.podDisruptionBudget.minAvailable) "") (ne (toString $v.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "verifier.podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if ge (int $v.drainSeconds) (int $v.terminationGracePeriodSeconds) }}
{{- fail "verifier.drainSeconds must be less than verifier.terminationGracePeriodSeconds, or the pod is killed while draining" }}
{{- end }}
{{- $registries := dict }}
{{- range $v.notary }}
{{- if hasKey $registries .registry }}
{{- fail (printf "verifier.notary: registry %s is listed twice" .registry) }}
{{- end }}
{{- $_ := set $registries .registry true }}
{{- end }}
{{- end }}
