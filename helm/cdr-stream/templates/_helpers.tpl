{{/*
Names, labels and the few derived settings every template shares.
*/}}

{{/* The chart name, as a DNS label. */}}
{{- define "cdr-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name alone when it already holds the chart name. */}}
{{- define "cdr-stream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cdr-stream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The two labels that tell this release's objects apart from any other's. */}}
{{- define "cdr-stream.instanceLabels" -}}
app.kubernetes.io/name: {{ include "cdr-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cdr-stream.labels" -}}
helm.sh/chart: {{ include "cdr-stream.chart" . }}
{{ include "cdr-stream.instanceLabels" . }}
app.kubernetes.io/version: {{ include "cdr-stream.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The connector pod; the component keeps the `helm test` pod out of the Service. */}}
{{- define "cdr-stream.selectorLabels" -}}
{{ include "cdr-stream.instanceLabels" . }}
app.kubernetes.io/component: connector
{{- end }}

{{- define "cdr-stream.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "cdr-stream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "cdr-stream.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "cdr-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdr-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cdr-stream.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "cdr-stream.fullname" .)) .Values.credentials.secretName }}
{{- end }}

{{/* Where the pod finds its files: the rendered TOML, and the passwords and TLS files of the Secrets. */}}
{{- define "cdr-stream.configDir" -}}/etc/cdr-stream{{- end }}
{{- define "cdr-stream.secretsDir" -}}/var/run/secrets/cdr-stream{{- end }}
{{/* The connector's one HTTP port (http_port in the TOML, EXPOSE in the Dockerfile). */}}
{{- define "cdr-stream.httpPort" -}}8080{{- end }}

{{/* A feed's key in the credentials Secret. */}}
{{- define "cdr-stream.feedPasswordKey" -}}
{{- default (printf "%s-password" .name) .passwordKey }}
{{- end }}

{{/* The Kafka security protocol follows from TLS on or off and a SASL mechanism set or not. */}}
{{- define "cdr-stream.securityProtocol" -}}
{{- $tls := .Values.kafka.tls.enabled }}
{{- $sasl := .Values.kafka.sasl.mechanism }}
{{- if and $tls $sasl }}SASL_SSL{{ else if $tls }}SSL{{ else if $sasl }}SASL_PLAINTEXT{{ else }}PLAINTEXT{{ end }}
{{- end }}

{{/* The credentials Secret's keys the pod needs, as a JSON list: each feed's password, the SASL password. */}}
{{- define "cdr-stream.credentialKeys" -}}
{{- $keys := list }}
{{- range .Values.feeds }}
{{- $keys = append $keys (include "cdr-stream.feedPasswordKey" .) }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
{{- $keys = append $keys .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- $keys | uniq | toJson }}
{{- end }}

{{/* PromQL label matchers of this connector's series. */}}
{{- define "cdr-stream.alertSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "cdr-stream.fullname" .) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}

{{/* An alert's `for` and labels: its severity and prometheusRule.additionalLabels. */}}
{{- define "cdr-stream.alertForAndLabels" -}}
for: {{ .alert.for }}
labels:
  severity: {{ .alert.severity }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
What the schema cannot say: relations between values. Each failure names the value and the fix.
*/}}
{{- define "cdr-stream.validate" -}}
{{- $names := list }}
{{- range .Values.feeds }}
{{- if has .name $names }}
{{- fail (printf "cdr-stream: feeds: the name %q is used twice; feed names must be unique (they key the stored offsets)" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int (add (ceil .Values.shutdownTimeoutSeconds) 9)) }}
{{- fail (printf "cdr-stream: terminationGracePeriodSeconds (%v) must be at least shutdownTimeoutSeconds (%v) + 10, or the pod is killed before it has aborted its transaction" .Values.terminationGracePeriodSeconds .Values.shutdownTimeoutSeconds) }}
{{- end }}
{{- $tls := .Values.kafka.tls }}
{{- if and (not $tls.enabled) (or $tls.clientCertSecret ($tls.caSecret).name) }}
{{- fail "cdr-stream: kafka.tls.caSecret.name and kafka.tls.clientCertSecret need kafka.tls.enabled: true" }}
{{- end }}
{{- if .Values.credentials.create }}
{{- range (include "cdr-stream.credentialKeys" . | fromJsonArray) }}
{{- if not (hasKey $.Values.credentials.data .) }}
{{- fail (printf "cdr-stream: credentials.create is true but credentials.data has no key %q (a feed's passwordKey or kafka.sasl.passwordKey)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
