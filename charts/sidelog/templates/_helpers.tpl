{{/* The name of every object of the release (truncated to 63: a DNS label). */}}
{{- define "sidelog.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidelog.labels" -}}
{{ include "sidelog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sidelog.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/* The webhook's Deployment, Service, ServiceAccount and RBAC objects. */}}
{{- define "sidelog.webhookName" -}}
{{- printf "%s-webhook" (include "sidelog.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/*
The Secret the webhook's serving certificate is read from. cert-manager writes tls.crt, tls.key
and ca.crt; the self-managed webhook keeps its CA and serving pair in a Secret of its own format,
hence the two names: switching modes never hands one owner's Secret to the other.
*/}}
{{- define "sidelog.tlsSecret" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-tls" (include "sidelog.webhookName" .) -}}
{{- else -}}
{{- printf "%s-certs" (include "sidelog.webhookName" .) -}}
{{- end -}}
{{- end -}}

{{- define "sidelog.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The host of webhook.url, without its port or IPv6 brackets: the name the API server dials, which
the serving certificate must carry.
*/}}
{{- define "sidelog.urlHost" -}}
{{- (urlParse .Values.webhook.url).hostname -}}
{{- end -}}

{{/* The clientConfig of a webhook at a path: (list $ path). No caBundle: cert-manager's cainjector or the self-managed webhook writes it. */}}
{{- define "sidelog.clientConfig" -}}
{{- $ := index . 0 -}}
{{- $path := index . 1 -}}
{{- if $.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix (include "sidelog.path" $) $.Values.webhook.url) $path | quote }}
{{- else -}}
service:
  namespace: {{ $.Release.Namespace }}
  name: {{ include "sidelog.webhookName" $ }}
  path: {{ $path }}
  port: 443
{{- end -}}
{{- end -}}

{{/* Where the webhook serves admission requests: webhook.Path in the Go code. */}}
{{- define "sidelog.path" -}}/mutate-v1-pod{{- end -}}

{{/* Where the Deployment mounts the policy and the certificates (the webhook's defaults). */}}
{{- define "sidelog.policyDir" -}}/etc/sidelog{{- end -}}
{{- define "sidelog.certDir" -}}/var/run/sidelog/certs{{- end -}}

{{/* What the schema cannot say: checks across values, each failing with the value's name. */}}
{{- define "sidelog.validate" -}}
{{- $metricsPort := ternary (int .Values.metrics.port) 8080 .Values.metrics.secure -}}
{{- if has (int .Values.webhook.port) (list $metricsPort 8081) -}}
{{- fail (printf "webhook.port: %d is taken by the webhook's metrics (%d) or health (8081) endpoint; choose another port" (int .Values.webhook.port) $metricsPort) -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) 8081 -}}
{{- fail "metrics.port: 8081 is taken by the webhook's health endpoint; choose another port" -}}
{{- end -}}
{{- with .Values.webhook.url -}}
{{- $u := urlParse . -}}
{{- if or (not $u.hostname) $u.query $u.fragment $u.userinfo -}}
{{- fail (printf "webhook.url: %q: want https://HOST[:PORT]/PATH with no user, query or fragment, e.g. https://host.docker.internal:9443/mutate-v1-pod" .) -}}
{{- end -}}
{{- end -}}
{{- with .Values.policy -}}
{{- include "sidelog.validatePolicy" . -}}
{{- end -}}
{{- $ca := trimSuffix "h" .Values.selfManaged.caLifetime | int -}}
{{- $cert := trimSuffix "h" .Values.selfManaged.certLifetime | int -}}
{{- if le $ca $cert -}}
{{- fail (printf "selfManaged.caLifetime (%s) must be longer than selfManaged.certLifetime (%s): the CA signs serving certificates until a third of its lifetime is left" .Values.selfManaged.caLifetime .Values.selfManaged.certLifetime) -}}
{{- end -}}
{{- end -}}

{{/*
The policy's checks across fields, as injector.ParsePolicy makes them (values.schema.json makes
the others): no more upstreams than maxUpstreams, no request above its limit, no default rate
limit above the maximum.
*/}}
{{- define "sidelog.validatePolicy" -}}
{{- $max := int (.maxUpstreams | default 8) -}}
{{- if gt (len (.upstream | default list)) $max -}}
{{- fail (printf "policy.upstream: %d addresses, more than the %d that policy.maxUpstreams allows" (len .upstream) $max) -}}
{{- end -}}
{{- if and .rateLimit .maxRateLimit -}}
{{- $d := splitList " " (include "sidelog.rate" .rateLimit) -}}
{{- $m := splitList " " (include "sidelog.rate" .maxRateLimit) -}}
{{- range $i, $what := list "bytes" "lines" -}}
{{- $max := float64 (index $m $i) -}}
{{- if and (gt $max 0.0) (gt (float64 (index $d $i)) $max) -}}
{{- fail (printf "policy.rateLimit: %s reads more %s a second than policy.maxRateLimit %s" $.rateLimit $what $.maxRateLimit) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $r := .resources | default dict -}}
{{- $limits := $r.limits | default dict -}}
{{- range $name, $req := ($r.requests | default dict) -}}
{{- if hasKey $limits $name -}}
{{- $lim := get $limits $name -}}
{{- $a := include "sidelog.quantity" $req -}}
{{- $b := include "sidelog.quantity" $lim -}}
{{- if and $a $b (gt (float64 $a) (mulf (float64 $b) 1.000000001)) -}}
{{- fail (printf "policy.resources.requests.%s: %v is more than the limit %v" $name $req $lim) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A rate limit (injector.RateLimitPattern, which the schema checked) as "<bytes> <lines>" per second, 0 for what it leaves open. */}}
{{- define "sidelog.rate" -}}
{{- $bytes := 0.0 -}}
{{- $lines := 0.0 -}}
{{- $mult := dict "B" 1.0 "k" 1000.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 -}}
{{- range splitList "," (toString .) -}}
{{- $p := trim . -}}
{{- if contains "line" $p -}}
{{- $lines = float64 (regexFind "^[0-9]+" $p) -}}
{{- else if ne $p "none" -}}
{{- $num := regexFind "^[0-9]*[.]?[0-9]*" $p -}}
{{- $unit := trimSuffix "/s" (trim (trimPrefix $num $p)) -}}
{{- if ne $unit "B" -}}{{- $unit = trimSuffix "B" $unit -}}{{- end -}}
{{- $bytes = ceil (mulf (float64 $num) (get $mult $unit)) -}}
{{- end -}}
{{- end -}}
{{- printf "%.0f %.0f" $bytes $lines -}}
{{- end -}}

{{/* A quantity (a number, or a string such as 500m or 1.5Gi) in base units; empty if its form is not known here. */}}
{{- define "sidelog.quantity" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- float64 . -}}
{{- else -}}
{{- $s := trimPrefix "+" (toString .) -}}
{{- $num := regexFind "^[0-9]*[.]?[0-9]*" $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- $mult := dict "" 1.0 "n" 0.000000001 "u" 0.000001 "m" 0.001 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "P" 1000000000000000.0 "E" 1000000000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- if and $num (ne $num ".") (hasKey $mult $unit) -}}
{{- mulf (float64 $num) (get $mult $unit) -}}
{{- end -}}
{{- end -}}
{{- end -}}
