"""What the poll loop tells: each committed page, each poll, each failure. Logs, metrics and health listen.

`PollObserver` does nothing by default, so an observer overrides only the events it cares about, and a
new event touches only the observers that need it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cdr_stream.errors import DeadLetterRule, FailureReason, FileAnomaly


@dataclass(frozen=True, slots=True)
class PageReport:
    """What one committed transaction carried."""

    from_id: int
    last_id: int
    events: int
    dead_letters: int
    dropped_seen: int
    dropped_duplicate: int
    dead_letter_rules: Counter[DeadLetterRule] = field(default_factory=Counter)
    newest_call_ms: int | None = None
    #: Values published as null because they could not be read, by field.
    unreadable_fields: Counter[str] = field(default_factory=Counter)
    commit_seconds: float = 0.0
    #: False when nothing needed a transaction (every row was already delivered).
    committed: bool = True


class PollObserver:
    """Told what each feed's loop does. Every event does nothing unless overridden."""

    def offset_loaded(self, feed: str, last_id: int) -> None:
        """The feed's stored offset was read (at start, and again after any doubt about Kafka)."""

    def page_committed(self, feed: str, page: PageReport) -> None:
        """A chunk of rows is done: committed, or (when `page.committed` is False) all of it re-sent."""

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        """A poll ended well; `advanced` when the position moved (more may follow at once)."""

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        """A poll failed in a way a retry may fix; the next attempt is in `retry_in` seconds."""

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        """A failure final for the feed (login refused, host key, fenced...): the feed is `failed` and tried
        again in `retry_in` seconds with its secrets read again, or, when `retry_in` is None, stopped for good."""

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        """A file source met a file it will not (re-)publish as listed: changed after commit, renamed..."""

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        """An answer too large to sort in memory is being sorted on disk: `rows` spilled so far."""


class ObserverGroup(PollObserver):
    """Tells several observers, in order (the log, the metrics, the health checks)."""

    def __init__(self, *observers: PollObserver) -> None:
        self.observers = observers

    def offset_loaded(self, feed: str, last_id: int) -> None:
        for observer in self.observers:
            observer.offset_loaded(feed, last_id)

    def page_committed(self, feed: str, page: PageReport) -> None:
        for observer in self.observers:
            observer.page_committed(feed, page)

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        for observer in self.observers:
            observer.poll_finished(feed, seconds=seconds, rows=rows, advanced=advanced)

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        for observer in self.observers:
            observer.poll_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        for observer in self.observers:
            observer.feed_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        for observer in self.observers:
            observer.file_anomaly(feed, name=name, reason=reason, message=message)

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        for observer in self.observers:
            observer.answer_sorting(feed, rows=rows, disk_bytes=disk_bytes)
