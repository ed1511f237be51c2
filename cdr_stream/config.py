"""Settings: one TOML file plus environment overrides, validated into one typed model.

Secrets are `SecretStr`, so every repr and log shows them masked. Every error names the field and says
what would fix it.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cdr_stream.answers.formats import ANSWER_FORMATS, AnswerFormat
from cdr_stream.errors import ConfigError
from cdr_stream.ops.logs import LogFormat
from cdr_stream.sources.base import SourceName

log = logging.getLogger(__name__)

ENV_PREFIX = "CDR_STREAM_"
PROVIDER_MIN_POLL_SECONDS = 600.0
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# A CDR file's name carries the start of its period: a day (YYYYMMDD, YYYY-MM-DD or YYYY_MM_DD), an hour
# or a 20-minute slot (HH or HHMM after it, HH and MM apart or not).
DEFAULT_FILE_PATTERN = (
    r".*?(?P<stamp>\d{4}(?P<sep>[-_]?)\d{2}(?P=sep)\d{2}(?:[_T-]?\d{2}(?:[-_]?\d{2})?)?)"
    rf"\.(?:{'|'.join(ANSWER_FORMATS)})"
)
# Settings of the web service that mean nothing to a feed collected over SFTP.
_HTTP_ONLY = ("url", "login", "password", "password_env", "password_file", "callsonly", "servicesonly", "ca_file")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(field: str, inline: SecretStr | None, env: str | None, file: Path | None) -> SecretStr | None:
    """Resolve a secret given inline, by environment variable name, or by file (a mounted Secret)."""
    given = [name for name, value in (("", inline), ("_env", env), ("_file", file)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(field + g for g in given)}")
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{field}_env names the environment variable {env!r}, which is not set")
        return SecretStr(value)
    if file is not None:
        try:
            return SecretStr(file.read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise ValueError(f"{field}_file {str(file)!r} cannot be read: {exc.strerror}") from None
    return inline


class SftpSettings(_Model):
    """Where and how a feed's CDR files are collected over SFTP (a feed with source = "sftp")."""

    host: str = Field(min_length=1, description="the SFTP server's host name or address")
    port: int = Field(default=22, ge=1, le=65535, description="the SFTP server's port")
    username: str = Field(min_length=1, description="the SFTP login")
    password: SecretStr | None = Field(default=None, description="the SFTP password (prefer password_file)")
    password_env: str | None = Field(default=None, description="name of an environment variable with the password")
    password_file: Path | None = Field(default=None, description="path of a file holding the password")
    private_key_file: Path | None = Field(default=None, description="an OpenSSH private key file (key authentication)")
    passphrase: SecretStr | None = Field(default=None, description="the private key's passphrase (prefer _file)")
    passphrase_env: str | None = Field(default=None, description="environment variable with the key's passphrase")
    passphrase_file: Path | None = Field(default=None, description="file holding the key's passphrase")
    known_hosts_file: Path = Field(
        description="an OpenSSH known_hosts file with the server's host key; the host key is always checked"
    )
    directory: str = Field(default=".", min_length=1, description="the remote directory holding the CDR files")
    file_pattern: str = Field(
        default=DEFAULT_FILE_PATTERN,
        min_length=1,
        description="regular expression a CDR file's whole name matches; its group `stamp` holds the start of "
        "the file's period: YYYYMMDD, YYYY-MM-DD or YYYY_MM_DD, optionally followed by HH or HHMM",
    )
    settle_seconds: float = Field(
        default=30.0,
        ge=0,
        description="a file is read only when its size and mtime stayed the same for this long, over two listings",
    )

    @field_validator("file_pattern")
    @classmethod
    def _check_pattern(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "stamp" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<stamp>...) holding the date (and time) of the file's period")
        return pattern

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        for name, path in (("known_hosts_file", self.known_hosts_file), ("private_key_file", self.private_key_file)):
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {str(path)!r} is not a readable file")
        password = _read_secret("password", self.password, self.password_env, self.password_file)
        passphrase = _read_secret("passphrase", self.passphrase, self.passphrase_env, self.passphrase_file)
        if password is None and self.private_key_file is None:
            raise ValueError(
                "no credentials: set private_key_file, or password_file, password_env, or the environment "
                "variable CDR_STREAM_FEEDS__<FEED>__SFTP__PASSWORD"
            )
        if passphrase is not None and self.private_key_file is None:
            raise ValueError("a passphrase is set but no private_key_file")
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "passphrase", passphrase)
        return self

    def with_fresh_secrets(self) -> SftpSettings:
        """These settings with the password and passphrase read again from their _file / _env."""
        update: dict[str, SecretStr | None] = {}
        if self.password_env is not None or self.password_file is not None:
            update["password"] = _read_secret("password", None, self.password_env, self.password_file)
        if self.passphrase_env is not None or self.passphrase_file is not None:
            update["passphrase"] = _read_secret("passphrase", None, self.passphrase_env, self.passphrase_file)
        return self.model_copy(update=update)

    @property
    def password_secret(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    @property
    def passphrase_secret(self) -> str | None:
        return self.passphrase.get_secret_value() if self.passphrase is not None else None


class FeedSettings(_Model):
    """One billing feed login to collect from."""

    name: str = Field(
        pattern=_NAME_PATTERN,
        description="a short unique name (letters, digits, . _ -); keys the offset and the transactional id",
    )
    # Before url and login: their validators read it.
    source: SourceName = Field(
        default="http", description="http: the billing feed web service; sftp: the provider's CDR files"
    )
    url: str = Field(default="", validate_default=True, description="the feed's full URL, http:// or https://")
    login: str = Field(default="", validate_default=True, description="the feed login (often the account number)")
    password: SecretStr | None = Field(default=None, description="the feed password (prefer password_file)")
    password_env: str | None = Field(default=None, description="name of an environment variable with the password")
    password_file: Path | None = Field(default=None, description="path of a file holding the password")
    format: AnswerFormat = Field(
        default="json",
        description=f"the answer format to ask for: {', '.join(ANSWER_FORMATS)} (txt: tab-separated); all give "
        "the same events",
    )
    callsonly: bool = Field(default=False, description="send callsonly=1 (calls only, no service fees)")
    servicesonly: bool = Field(default=False, description="send servicesonly=1 (service fees only)")
    poll_interval_seconds: float = Field(
        default=PROVIDER_MIN_POLL_SECONDS,
        gt=0,
        description="seconds to wait after an empty answer (provider asks >= 600)",
    )
    initial_from_id: int = Field(
        default=0, ge=0, description="the fromid of the very first query, when no offset is stored yet"
    )
    max_rows_per_transaction: int = Field(
        default=10_000, ge=1, le=1_000_000, description="rows of one answer committed per Kafka transaction"
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0, description="seconds to connect to the feed")
    read_timeout_seconds: float = Field(
        default=60.0, gt=0, description="seconds the feed may stay silent while answering"
    )
    ca_file: Path | None = Field(default=None, description="a PEM CA bundle to trust for an https feed")
    backoff_initial_seconds: float = Field(default=1.0, gt=0, description="first retry delay after a failure")
    backoff_max_seconds: float = Field(default=300.0, gt=0, description="the cap on the retry delay")

    sftp: SftpSettings | None = Field(default=None, description="the [feeds.sftp] table of a feed with source sftp")

    @field_validator("url", "login")
    @classmethod
    def _required_for_http(cls, value: str, info: ValidationInfo) -> str:
        # Checked per field (not in the model validator) so a missing url is named beside any other error.
        if info.data.get("source") == "http" and not value:
            raise ValueError('Field required (with source = "http")')
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str, info: ValidationInfo) -> str:
        if info.data.get("source") != "http":
            return url
        if not re.match(r"^https?://[^/\s?#]+", url):
            raise ValueError("must start with http:// or https:// and name a host")
        if "?" in url or "#" in url:
            raise ValueError("must not carry a query: credentials and parameters go in the POST body")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials (user:password@): use login and password_file")
        return url

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_initial_seconds")
        if self.source == "sftp":
            return self._check_sftp()
        if self.sftp is not None:
            raise ValueError('sftp: a [feeds.sftp] table only belongs to a feed with source = "sftp"')
        if self.callsonly and self.servicesonly:
            raise ValueError("callsonly and servicesonly exclude each other; set at most one")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {str(self.ca_file)!r} is not a readable file")
        secret = _read_secret("password", self.password, self.password_env, self.password_file)
        if secret is None:
            raise ValueError(
                "no password: set password_file (a mounted Secret), password_env, or the environment "
                f"variable {env_name('feeds', self.name, 'password')}"
            )
        object.__setattr__(self, "password", secret)
        return self

    def _check_sftp(self) -> Self:
        misplaced = [name for name in _HTTP_ONLY if name in self.model_fields_set]
        if misplaced:
            raise ValueError(
                f'{", ".join(misplaced)}: only for source = "http"; an SFTP login and its password go in '
                "the [feeds.sftp] table"
            )
        if self.sftp is None:
            raise ValueError('sftp: source = "sftp" needs a [feeds.sftp] table (host, username, known_hosts_file)')
        return self

    @property
    def secret(self) -> str:
        assert self.password is not None  # resolved by the validator
        return self.password.get_secret_value()

    def secrets(self) -> list[str]:
        """Every password of this feed, for the log redaction."""
        found = [self.password] + ([self.sftp.password, self.sftp.passphrase] if self.sftp is not None else [])
        return [secret.get_secret_value() for secret in found if secret is not None]

    def with_fresh_secrets(self) -> FeedSettings:
        """These settings with every secret given by file or environment variable read again, so that a
        rotated Secret takes effect without a restart. Raises ConfigError naming the field that cannot be read."""
        try:
            if self.sftp is not None:
                return self.model_copy(update={"sftp": self.sftp.with_fresh_secrets()})
            if self.password_env is None and self.password_file is None:
                return self
            password = _read_secret("password", None, self.password_env, self.password_file)
        except ValueError as exc:
            where = "feeds.sftp" if self.sftp is not None else "feeds"
            raise ConfigError(f"{where} ({self.name}): {exc}") from None
        return self.model_copy(update={"password": password})


class KafkaSettings(_Model):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1, description="comma-separated host:port list")
    client_id: str = Field(default="cdr-stream", min_length=1, description="the Kafka client id")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)"
    )
    sasl_username: str | None = Field(default=None, description="the SASL user")
    sasl_password: SecretStr | None = Field(default=None, description="the SASL password (prefer _file)")
    sasl_password_env: str | None = Field(default=None, description="environment variable with the SASL password")
    sasl_password_file: Path | None = Field(default=None, description="file holding the SASL password")
    ssl_cafile: Path | None = Field(default=None, description="PEM CA bundle for the brokers")
    ssl_certfile: Path | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="PEM client key (mutual TLS)")
    transactional_id_prefix: str = Field(
        default="cdr-stream", pattern=_NAME_PATTERN, description="prefix of each feed's transactional id"
    )
    transaction_timeout_ms: int = Field(
        default=60_000, ge=1_000, description="broker-side timeout of an open transaction (ms)"
    )
    commit_timeout_seconds: float = Field(
        default=30.0, gt=0, description="seconds a commit may take before the producer is rebuilt"
    )
    request_timeout_ms: int = Field(default=30_000, ge=1_000, description="Kafka request timeout (ms)")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default=None, description="batch compression: gzip, snappy, lz4, zstd or none"
    )

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username")
        secret = _read_secret("sasl_password", self.sasl_password, self.sasl_password_env, self.sasl_password_file)
        if sasl and secret is None:
            raise ValueError(
                "SASL needs a password: set sasl_password_file, sasl_password_env, or the environment "
                f"variable {env_name('kafka', 'sasl_password')}"
            )
        object.__setattr__(self, "sasl_password", secret)
        return self


class TopicSettings(_Model):
    events: str = Field(default="cdr.events", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="events topic")
    dead_letter: str = Field(
        default="cdr.events.dlq", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="dead-letter topic"
    )
    state: str = Field(
        default="cdr-stream.state", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="compacted offsets topic"
    )
    create: bool = Field(default=True, description="create missing topics at start")
    events_partitions: int = Field(default=6, ge=1, description="partitions of a created events topic")
    dead_letter_partitions: int = Field(default=1, ge=1, description="partitions of a created dead-letter topic")
    retention_ms: int = Field(
        default=-1,
        ge=-1,
        description="time retention of created events and dead-letter topics (ms); -1 keeps them by time for ever",
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="replication of created topics; unset: 3, fewer on a smaller cluster, more if the cluster default",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len({self.events, self.dead_letter, self.state}) != 3:
            raise ValueError("events, dead_letter and state must be three different topics")
        return self


class Settings(_Model):
    feeds: list[FeedSettings] = Field(min_length=1, description="at least one [[feeds]] table")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR"
    )
    shutdown_timeout_seconds: float = Field(
        default=8.0, gt=0, description="seconds to finish the page in flight on SIGTERM before aborting it"
    )
    log_format: LogFormat = Field(
        default="auto", description="json lines, text, or auto: text on a terminal, json otherwise"
    )
    # A pod must answer the kubelet and Prometheus on its own IP, hence every interface by default.
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104
        min_length=1,
        description="address of /metrics, /healthz, /readyz",
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="port of /metrics, /healthz, /readyz, /status (0: any)"
    )
    tmp_dir: Path | None = Field(
        default=None, description="where large answers are sorted on disk (default: the system's temporary directory)"
    )
    tmp_max_bytes: int = Field(
        default=4 * 1024**3, ge=1024 * 1024, description="the most disk all sorts may take at once, in bytes"
    )
    failed_retry_initial_seconds: float = Field(
        default=60.0,
        gt=0,
        description="first wait before a failed feed (login refused, host key, config) is tried again",
    )
    failed_retry_max_seconds: float = Field(
        default=900.0, gt=0, description="the cap on the wait between the attempts of a failed feed"
    )
    give_up_after_attempts: int = Field(
        default=0,
        ge=0,
        description="attempts in a row a feed may fail (login refused...) before it is given up until a restart; "
        "0: a failed feed is retried for ever",
    )
    exit_when_any_feed_fails: bool = Field(
        default=False,
        description="stop the whole process (exit non-zero) at the first failure of any feed, as a single-feed "
        "connector would",
    )

    @model_validator(mode="after")
    def _unique_feeds(self) -> Self:
        names = [feed.name for feed in self.feeds]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"feed names must be unique; repeated: {', '.join(doubled)}")
        if self.failed_retry_max_seconds < self.failed_retry_initial_seconds:
            raise ValueError("failed_retry_max_seconds must be >= failed_retry_initial_seconds")
        return self

    def feed(self, name: str) -> FeedSettings:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        known = ", ".join(feed.name for feed in self.feeds)
        raise ConfigError(f"no feed named {name!r} in the configuration (configured: {known})")

    def secrets(self) -> list[str]:
        """Every password in this configuration, for the log redaction."""
        secrets = [self.kafka.sasl_password.get_secret_value()] if self.kafka.sasl_password is not None else []
        for feed in self.feeds:
            secrets += feed.secrets()
        return secrets

    def warnings(self) -> list[str]:
        """Things that are allowed but probably wrong."""
        return [
            f"feeds[{i}] ({feed.name}): poll_interval_seconds={feed.poll_interval_seconds:g} is below the "
            f"{PROVIDER_MIN_POLL_SECONDS:g} s a real provider asks for; use it only with a simulator"
            for i, feed in enumerate(self.feeds)
            if feed.poll_interval_seconds < PROVIDER_MIN_POLL_SECONDS
        ]


# --- loading -------------------------------------------------------------------------------------------


_TOP_LEVEL_SCALARS = frozenset(Settings.model_fields) - {"feeds", "kafka", "topics"}


def env_name(*path: str) -> str:
    """The environment variable that overrides a setting, e.g. CDR_STREAM_FEEDS__HERO_NZ__PASSWORD."""
    return ENV_PREFIX + "__".join(re.sub(r"[^A-Za-z0-9]", "_", part).upper() for part in path)


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Overlay CDR_STREAM_<SECTION>__<FIELD> (and CDR_STREAM_FEEDS__<FEED>__<FIELD>) onto `data`."""
    feeds: list[Any] = data["feeds"] if isinstance(data.get("feeds"), list) else []
    by_env_name = {
        env_name("feeds", str(feed.get("name", "")))[len(ENV_PREFIX) :]: feed
        for feed in feeds
        if isinstance(feed, dict)
    }
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].split("__")
        if parts[0] == "FEEDS" and len(parts) in (3, 4):
            feed = by_env_name.get(f"FEEDS__{parts[1]}")
            if feed is None:
                raise ConfigError(f"{key}: no configured feed matches {parts[1]!r}")
            if len(parts) == 4:  # a setting of the feed's sub-table, e.g. CDR_STREAM_FEEDS__X__SFTP__PASSWORD
                table = feed.get(parts[2].lower())
                if not isinstance(table, dict):
                    raise ConfigError(f"{key}: feed {parts[1]!r} has no [feeds.{parts[2].lower()}] table")
                feed[parts[2].lower()] = table = dict(table)
                table[parts[3].lower()] = value
            else:
                feed[parts[2].lower()] = value
        elif len(parts) == 2 and parts[0] in ("KAFKA", "TOPICS"):
            section = data.setdefault(parts[0].lower(), {})
            section[parts[1].lower()] = value
        elif len(parts) == 1 and parts[0].lower() in _TOP_LEVEL_SCALARS:
            data[parts[0].lower()] = value


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _field_hint(loc: tuple[int | str, ...]) -> str | None:
    """The description of the setting at `loc`; none for a whole table (a list index ends the path)."""
    if not loc or isinstance(loc[-1], int):
        return None
    model: Any = Settings
    hint = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return None
        hint = info.description
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return hint


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting; check its spelling against the configuration reference in the README"
        hint = _field_hint(loc)
        lines.append(f"  {_location(loc)}: {message}" + (f" (expected: {hint})" if hint else ""))
    return "invalid configuration:\n" + "\n".join(lines)


def parse_settings(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    merged: dict[str, Any] = {
        key: ([dict(feed) for feed in value] if key == "feeds" and isinstance(value, list) else value)
        for key, value in data.items()
    }
    for section in ("kafka", "topics"):
        if isinstance(merged.get(section), dict):
            merged[section] = dict(merged[section])
    _apply_env(merged, os.environ if environ is None else environ)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, environ)
