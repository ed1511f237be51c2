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

{{/*
Where the pod finds its files: the rendered TOML, the passwords, keys and TLS files of the Secrets, and one
known_hosts file per sftp feed, named after the feed.
*/}}
{{- define "cdr-stream.configDir" -}}/etc/cdr-stream{{- end }}
{{- define "cdr-stream.secretsDir" -}}/var/run/secrets/cdr-stream{{- end }}
{{- define "cdr-stream.knownHostsDir" -}}/etc/cdr-stream-known-hosts{{- end }}
{{- /* Where large answers are sorted on disk: an emptyDir, as the root filesystem is read-only. */}}
{{- define "cdr-stream.tmpDir" -}}/var/tmp/cdr-stream{{- end }}
{{/* The connector's one HTTP port (http_port in the TOML, EXPOSE in the Dockerfile). */}}
{{- define "cdr-stream.httpPort" -}}8080{{- end }}

{{/* A feed's key in the credentials Secret. */}}
{{- define "cdr-stream.feedPasswordKey" -}}
{{- default (printf "%s-password" .name) .passwordKey }}
{{- end }}

{{/* A feed's source: http (the web service) unless it says sftp. */}}
{{- define "cdr-stream.feedSource" -}}
{{- default "http" .source }}
{{- end }}

{{/* The credentials Secret's keys one feed needs, as a JSON list: an http feed's password, or an sftp feed's
password, private key and passphrase, whichever it names. */}}
{{- define "cdr-stream.feedCredentialKeys" -}}
{{- if eq (include "cdr-stream.feedSource" .) "sftp" }}
{{- $sftp := .sftp | default dict }}
{{- compact (list $sftp.passwordKey $sftp.privateKeyKey $sftp.passphraseKey) | toJson }}
{{- else }}
{{- list (include "cdr-stream.feedPasswordKey" .) | toJson }}
{{- end }}
{{- end }}

{{/* The sftp feeds, as a JSON list. */}}
{{- define "cdr-stream.sftpFeeds" -}}
{{- $feeds := list }}
{{- range .Values.feeds }}
{{- if eq (include "cdr-stream.feedSource" .) "sftp" }}
{{- $feeds = append $feeds . }}
{{- end }}
{{- end }}
{{- $feeds | toJson }}
{{- end }}

{{/* The TCP ports the feeds are reached on, as a JSON list: networkPolicy.feeds.ports and each sftp feed's
port (22 unless set). */}}
{{- define "cdr-stream.feedPorts" -}}
{{- $ports := list }}
{{- range .Values.networkPolicy.feeds.ports }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- range (include "cdr-stream.sftpFeeds" . | fromJsonArray) }}
{{- $ports = append $ports (int (default 22 (.sftp | default dict).port)) }}
{{- end }}
{{- $ports | uniq | toJson }}
{{- end }}

{{/* The Kafka security protocol follows from TLS on or off and a SASL mechanism set or not. */}}
{{- define "cdr-stream.securityProtocol" -}}
{{- $tls := .Values.kafka.tls.enabled }}
{{- $sasl := .Values.kafka.sasl.mechanism }}
{{- if and $tls $sasl }}SASL_SSL{{ else if $tls }}SSL{{ else if $sasl }}SASL_PLAINTEXT{{ else }}PLAINTEXT{{ end }}
{{- end }}

{{/* The credentials Secret's keys the pod needs, as a JSON list: each feed's, the SASL password. */}}
{{- define "cdr-stream.credentialKeys" -}}
{{- $keys := list }}
{{- range .Values.feeds }}
{{- $keys = concat $keys (include "cdr-stream.feedCredentialKeys" . | fromJsonArray) }}
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
What the schema cannot say: relations between values. Each failure names the value and the fix. A feed's
source and what belongs to it the schema says too, but only by paths; these messages say what to do, and
hold where the schema is skipped (--skip-schema-validation).
*/}}
{{- define "cdr-stream.validate" -}}
{{- $names := list }}
{{- range .Values.feeds }}
{{- if has .name $names }}
{{- fail (printf "cdr-stream: feeds: the name %q is used twice; feed names must be unique (they key the stored offsets)" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- range $i, $feed := .Values.feeds }}
{{- include "cdr-stream.validateFeed" (dict "feed" $feed "where" (printf "feeds[%d] (%s)" $i $feed.name)) }}
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
{{- fail (printf "cdr-stream: credentials.create is true but credentials.data has no key %q (a feed's passwordKey, an sftp feed's sftp.passwordKey, sftp.privateKeyKey or sftp.passphraseKey, or kafka.sasl.passwordKey)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One feed's source and what belongs to it: an http feed has url and login and no sftp block; an sftp feed has
an sftp block with credentials and known_hosts (host key checking cannot be switched off), and none of the
web service's settings. Called with (dict "feed" FEED "where" "feeds[i] (name)").
*/}}
{{- define "cdr-stream.validateFeed" -}}
{{- $feed := .feed }}
{{- $where := printf "cdr-stream: %s" .where }}
{{- $source := include "cdr-stream.feedSource" $feed }}
{{- if eq $source "sftp" }}
{{- range list "url" "login" "passwordKey" }}
{{- if hasKey $feed . }}
{{- fail (printf "%s: source sftp takes no %s; the SFTP login and credentials go in the feed's sftp block (sftp.username, sftp.passwordKey or sftp.privateKeyKey)" $where .) }}
{{- end }}
{{- end }}
{{- range list "callsonly" "servicesonly" "ca_file" }}
{{- if hasKey ($feed.options | default dict) . }}
{{- fail (printf "%s: options.%s belongs to the web service (source http), not to an sftp feed" $where .) }}
{{- end }}
{{- end }}
{{- $sftp := $feed.sftp | default dict }}
{{- if not $sftp }}
{{- fail (printf "%s: source sftp needs an sftp block (host, username, passwordKey or privateKeyKey, knownHosts)" $where) }}
{{- end }}
{{- if not (or ($sftp.knownHosts).configMap ($sftp.knownHosts).secret) }}
{{- fail (printf "%s: an sftp feed needs sftp.knownHosts.configMap or sftp.knownHosts.secret, the object holding an OpenSSH known_hosts file with the server's host key; host key checking cannot be switched off" $where) }}
{{- end }}
{{- if and ($sftp.knownHosts).configMap ($sftp.knownHosts).secret }}
{{- fail (printf "%s: sftp.knownHosts names both a configMap and a secret; give one" $where) }}
{{- end }}
{{- if not (or $sftp.passwordKey $sftp.privateKeyKey) }}
{{- fail (printf "%s: an sftp feed needs sftp.passwordKey or sftp.privateKeyKey (a key of the credentials Secret)" $where) }}
{{- end }}
{{- if and $sftp.passphraseKey (not $sftp.privateKeyKey) }}
{{- fail (printf "%s: sftp.passphraseKey is set but sftp.privateKeyKey is not" $where) }}
{{- end }}
{{- else if eq $source "http" }}
{{- if $feed.sftp }}
{{- fail (printf "%s: an sftp block belongs to a feed with source: sftp" $where) }}
{{- end }}
{{- if not (and $feed.url $feed.login) }}
{{- fail (printf "%s: an http feed needs url and login" $where) }}
{{- end }}
{{- else }}
{{- fail (printf "%s: source %q is neither http nor sftp" $where $source) }}
{{- end }}
{{- end }}
