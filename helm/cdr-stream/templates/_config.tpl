{{/*
The connector's TOML configuration, from the values. Keys and meanings: the configuration reference
in the project README (cdr_stream/config.py). Numbers and strings go through toJson: a JSON string is
a valid TOML basic string, and toJson never writes 1e+06 for an integer.
*/}}
{{- define "cdr-stream.config" -}}
# cdr-stream configuration (see the configuration reference in the project README), rendered by the
# Helm chart from its values. Passwords and keys are files of the mounted Secret.
log_level = {{ .Values.log.level | toJson }}
log_format = {{ .Values.log.format | toJson }}
shutdown_timeout_seconds = {{ .Values.shutdownTimeoutSeconds | toJson }}
failed_retry_initial_seconds = {{ .Values.failedFeeds.retryInitialSeconds | toJson }}
failed_retry_max_seconds = {{ .Values.failedFeeds.retryMaxSeconds | toJson }}
give_up_after_attempts = {{ .Values.failedFeeds.giveUpAfterAttempts | toJson }}
exit_when_any_feed_fails = {{ .Values.failedFeeds.exitWhenAnyFails | toJson }}
http_port = {{ include "cdr-stream.httpPort" . }}
tmp_dir = {{ include "cdr-stream.tmpDir" . | toJson }}
tmp_max_bytes = {{ mul .Values.tmpDir.sizeLimitMiB 943718 }}

[kafka]
bootstrap_servers = {{ .Values.kafka.bootstrapServers | toJson }}
security_protocol = {{ include "cdr-stream.securityProtocol" . | toJson }}
{{- with .Values.kafka.sasl }}
{{- if .mechanism }}
sasl_mechanism = {{ .mechanism | toJson }}
sasl_username = {{ .username | toJson }}
sasl_password_file = {{ printf "%s/%s" (include "cdr-stream.secretsDir" $) .passwordKey | toJson }}
{{- end }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
{{- if (.Values.kafka.tls.caSecret).name }}
ssl_cafile = {{ printf "%s/kafka-ca.crt" (include "cdr-stream.secretsDir" .) | toJson }}
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret }}
ssl_certfile = {{ printf "%s/kafka-client.crt" (include "cdr-stream.secretsDir" .) | toJson }}
ssl_keyfile = {{ printf "%s/kafka-client.key" (include "cdr-stream.secretsDir" .) | toJson }}
{{- end }}
{{- end }}
{{- with .Values.kafka.transactionalIdPrefix }}
transactional_id_prefix = {{ . | toJson }}
{{- end }}
{{- range $key, $value := .Values.kafka.options }}
{{ $key }} = {{ $value | toJson }}
{{- end }}

[topics]
events = {{ .Values.topics.events | toJson }}
dead_letter = {{ .Values.topics.deadLetter | toJson }}
state = {{ .Values.topics.state | toJson }}
{{- with .Values.topics }}
{{- if hasKey . "create" }}
create = {{ .create | toJson }}
{{- end }}
{{- if hasKey . "eventsPartitions" }}
events_partitions = {{ .eventsPartitions | toJson }}
{{- end }}
{{- if hasKey . "deadLetterPartitions" }}
dead_letter_partitions = {{ .deadLetterPartitions | toJson }}
{{- end }}
{{- if hasKey . "retentionMs" }}
retention_ms = {{ .retentionMs | toJson }}
{{- end }}
{{- if not (kindIs "invalid" .replicationFactor) }}
replication_factor = {{ .replicationFactor | toJson }}
{{- end }}
{{- end }}
{{- $secretsDir := include "cdr-stream.secretsDir" . }}
{{- range .Values.feeds }}

[[feeds]]
name = {{ .name | toJson }}
{{- if eq (include "cdr-stream.feedSource" .) "sftp" }}
source = "sftp"
{{- else }}
url = {{ .url | toJson }}
login = {{ .login | toJson }}
password_file = {{ printf "%s/%s" $secretsDir (include "cdr-stream.feedPasswordKey" .) | toJson }}
{{- end }}
format = {{ default "json" .format | toJson }}
poll_interval_seconds = {{ (kindIs "invalid" .pollIntervalSeconds) | ternary $.Values.pollIntervalSeconds .pollIntervalSeconds | toJson }}
{{- range $key, $value := .options }}
{{ $key }} = {{ $value | toJson }}
{{- end }}
{{- if eq (include "cdr-stream.feedSource" .) "sftp" }}
{{- /* The feed's own keys above: after this header every key belongs to [feeds.sftp]. */}}

[feeds.sftp]
{{- with .sftp }}
{{- range $key, $value := omit . "passwordKey" "privateKeyKey" "passphraseKey" "knownHosts" }}
{{ $key }} = {{ $value | toJson }}
{{- end }}
{{- with .passwordKey }}
password_file = {{ printf "%s/%s" $secretsDir . | toJson }}
{{- end }}
{{- with .privateKeyKey }}
private_key_file = {{ printf "%s/%s" $secretsDir . | toJson }}
{{- end }}
{{- with .passphraseKey }}
passphrase_file = {{ printf "%s/%s" $secretsDir . | toJson }}
{{- end }}
{{- end }}
known_hosts_file = {{ printf "%s/%s" (include "cdr-stream.knownHostsDir" $) .name | toJson }}
{{- end }}
{{- end }}
{{- end }}
