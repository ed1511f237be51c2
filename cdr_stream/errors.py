"""Every error the connector raises on purpose, under one base, and the closed sets that label them.

`FailureReason` names why a poll or a run failed and `DeadLetterRule` why a row was set aside; both label
metrics, so their values are fixed. A foreign error (aiohttp, asyncssh, aiokafka) is mapped to one of
these at the seam where it is met, except a bare Kafka error, which the loop labels `kafka`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Final


class FailureReason(StrEnum):
    """Why a poll, a run or a whole feed failed."""

    # The feed's answers (sources/, answers/).
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TRUNCATED = "truncated"
    INVALID_JSON = "invalid_json"
    NOT_JSON_ARRAY = "not_json_array"
    INVALID_TEXT = "invalid_text"
    INVALID_HEADER = "invalid_header"
    MISSING_HEADER = "missing_header"
    MISSING_COLUMN = "missing_column"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    SFTP = "sftp"
    HOST_KEY = "host_key"
    PRIVATE_KEY = "private_key"
    FILE_CHANGED = "file_changed"
    SPILL = "spill"
    # The Kafka side (kafka/).
    COMMIT_TIMEOUT = "commit_timeout"
    COMMIT_FAILED = "commit_failed"
    STATE_READ = "state_read"
    HANGING_TRANSACTION = "hanging_transaction"
    KAFKA = "kafka"
    # The feed as a whole.
    FENCED = "fenced"
    CONFIG = "config"
    CRASHED = "crashed"
    OTHER = "other"


#: After these the loop rebuilds its producer and reads the stored offset again: Kafka holds the truth.
KAFKA_REASONS: Final = frozenset(
    {FailureReason.STATE_READ, FailureReason.COMMIT_TIMEOUT, FailureReason.COMMIT_FAILED, FailureReason.KAFKA}
)


class DeadLetterRule(StrEnum):
    """Why a row went to the dead-letter topic (records/)."""

    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    INVALID_VALUE = "invalid_value"
    NOT_AN_OBJECT = "not_an_object"
    MALFORMED_ROW = "malformed_row"
    TOO_LARGE = "too_large"


class FileAnomaly(StrEnum):
    """Why a file source will not (re-)publish a file as listed (sources/files.py)."""

    CHANGED = "changed"
    SHRUNK = "shrunk"
    RENAMED = "renamed"
    CHANGED_IN_FLIGHT = "changed_in_flight"
    VANISHED_IN_FLIGHT = "vanished_in_flight"
    NOT_CDR_FILE = "not_cdr_file"


class CdrStreamError(Exception):
    """The base of every error the connector raises on purpose.

    `retriable` says whether the same attempt may succeed later without a person changing anything;
    `reason` labels the failure in metrics and logs.
    """

    retriable: ClassVar[bool] = False
    reason: FailureReason = FailureReason.OTHER


# --- configuration ---------------------------------------------------------------------------------------


class ConfigError(CdrStreamError):
    """A configuration problem; the message names each field and the fix."""

    reason = FailureReason.CONFIG


# --- the feed ----------------------------------------------------------------------------------------------


class FeedError(CdrStreamError):
    """A failed feed query or file collection; the message is for people. `retry_after` is the feed's
    own Retry-After in seconds, when it gave one."""

    retriable = True

    def __init__(self, reason: FailureReason, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class FeedAuthError(FeedError):
    """The feed refused the login or password: retrying will not help, a person must fix the secret."""

    retriable = False


class FeedRefused(FeedError):
    """A failure of the source's set-up a retry cannot fix (an unknown host key, an unreadable private key)."""

    retriable = False


class AnswerFormatError(CdrStreamError):
    """The body is not what the format promises (an HTML page, truncated JSON, a text body without header...)."""

    retriable = True

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class SpillError(CdrStreamError):
    """The answer could not be sorted on disk: the size limit or the disk is full, or the directory is unusable."""

    retriable = True
    reason = FailureReason.SPILL


# --- Kafka -------------------------------------------------------------------------------------------------


class WriteError(CdrStreamError):
    """A transaction did not commit; nothing of it is visible to read_committed consumers."""

    retriable = True
    reason = FailureReason.COMMIT_FAILED


class CommitUncertain(WriteError):
    """The commit did not finish in time: it may or may not have happened. Rebuild and re-read the state."""

    reason = FailureReason.COMMIT_TIMEOUT


class WriterFenced(WriteError):
    """Another process took over this transactional id; this one must stop writing."""

    retriable = False
    reason = FailureReason.FENCED


class TransactionTimedOut(WriteError):
    """The broker aborted the transaction after transaction.timeout.ms and bumped the producer's epoch: the
    producer is refused as fenced, but no other instance is implied. Rebuild and re-read the state."""


class HangingTransaction(CdrStreamError):
    """Kafka left a transaction of the feed open on a partition, and which way it was decided is not known:
    the feed waits for a person rather than publish over it (kafka/hanging.py)."""

    retriable = False
    reason = FailureReason.HANGING_TRANSACTION


class StateReadError(CdrStreamError):
    """The state topic could not be read to its end."""

    retriable = True
    reason = FailureReason.STATE_READ


class TopicMissingError(CdrStreamError):
    """A topic to read does not exist."""


class TopicSetupError(CdrStreamError):
    """A topic is missing or misconfigured in a way the connector must not work around."""


class KafkaAuthenticationError(CdrStreamError):
    """Kafka refused the SASL login: retrying will not help, a person must fix the user or the secret."""


# --- feeds, runs and the process ------------------------------------------------------------------------------


class FeedStopped(CdrStreamError):
    """The feed stopped for good: fenced by another instance, or given up after too many failed attempts."""

    def __init__(self, feed: str, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.feed = feed
        self.reason = reason

    @property
    def fenced(self) -> bool:
        return self.reason == FailureReason.FENCED


class ConnectorError(CdrStreamError):
    """The connector stopped because its feeds did: `causes` holds each stopped feed's reason and message,
    and the message has one line per feed."""

    def __init__(self, causes: dict[str, FeedStopped]) -> None:
        self.causes = causes
        super().__init__("\n".join(f"feed {feed} ({cause.reason}): {cause}" for feed, cause in causes.items()))

    @property
    def fenced(self) -> bool:
        """True when every stopped feed was taken over by another instance."""
        return all(cause.fenced for cause in self.causes.values())


class RunError(CdrStreamError):
    """A run (backfill, dead-letter replay) cannot go on for a reason a retry cannot fix; the message says
    why and what to do."""


class BackfillError(RunError):
    """A backfill cannot go on."""


class DlqReplayError(RunError):
    """A dead-letter replay cannot go on."""


class EndpointError(CdrStreamError):
    """The HTTP endpoints could not be served (the port is taken, say)."""


class StatusError(CdrStreamError):
    """A connector's /status could not be read; the message says where and why."""


class ExpectationError(CdrStreamError, ValueError):
    """An expectation of the checker (a range or an ID file) that cannot be read."""
