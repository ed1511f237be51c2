"""Prometheus metrics: a PollObserver that keeps the `cdr_stream_*` series, in a registry of its own.

Every series exists from start-up (at 0), one `feed` label value per configured feed, and the `reason`,
`rule` and `field` labels come from closed sets, so the number of series is fixed by the configuration.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.process_collector import ProcessCollector

from cdr_stream import __version__
from cdr_stream.answers.order import TempSpace
from cdr_stream.errors import DeadLetterRule, FailureReason, FileAnomaly
from cdr_stream.ops.health import FEED_STATES, FeedHealth
from cdr_stream.pipeline.observer import PageReport, PollObserver
from cdr_stream.records.processor import (
    UNREADABLE_LABELS,
)

if TYPE_CHECKING:
    from cdr_stream.pipeline.dlq import ChunkOutcome, ReplayIdentity, ReplayProgress

#: The closed label sets, from the enums every raise and rule is typed with (errors.py).
FAILURE_REASONS: Final = tuple(FailureReason)
DEAD_LETTER_RULES: Final = tuple(DeadLetterRule)
#: Which value was published as null because it could not be read: a descriptive field, or `extra`.
UNREADABLE_FIELDS: Final = (*UNREADABLE_LABELS, "other")
DROP_REASONS: Final = ("already_seen", "duplicate_in_answer")
#: Why a file source skipped a file; a file not matching the pattern has a counter of its own.
FILE_ANOMALIES: Final = tuple(anomaly for anomaly in FileAnomaly if anomaly is not FileAnomaly.NOT_CDR_FILE)
#: What `dlq replay` did with a dead letter (dlq.py): the outcomes it counts.
REPLAY_OUTCOMES: Final = ("replayed", "already_published", "still_failing", "skipped")
#: Failures after which the transaction in flight was aborted or left in doubt.
_ABORTING_REASONS: Final = frozenset({FailureReason.COMMIT_TIMEOUT, FailureReason.COMMIT_FAILED})

POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
COMMIT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# The `_created` companions double the series count and no dashboard or alert here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _ready(health: FeedHealth, feed: str) -> float:
    return 1.0 if health.is_ready(feed) else 0.0


def _in_state(health: FeedHealth, feed: str, state: str) -> float:
    return 1.0 if health.state(feed) == state else 0.0


def _bounded(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed else "other"


class ConnectorMetrics(PollObserver):
    """The connector's metrics. Pass it as (part of) the connector's observer; `render()` is /metrics."""

    def __init__(
        self,
        feeds: Sequence[str],
        health: FeedHealth,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        space: TempSpace | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._newest_call: dict[str, float] = {}
        r = self.registry
        ProcessCollector(registry=r)
        build = Gauge(
            "cdr_stream_build_info", "The running build (always 1).", ["version", "python_version"], registry=r
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.polls = Counter("cdr_stream_polls", "Feed queries made, failed or not.", ["feed"], registry=r)
        self.poll_failures = Counter(
            "cdr_stream_poll_failures", "Failed feed queries and commits, by reason.", ["feed", "reason"], registry=r
        )
        self.poll_duration = Histogram(
            "cdr_stream_poll_duration_seconds",
            "One feed query, from the request to its last chunk committed.",
            ["feed"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.fetched = Counter("cdr_stream_records_fetched", "Rows received from the feed.", ["feed"], registry=r)
        self.published = Counter(
            "cdr_stream_records_published", "Events committed to the events topic.", ["feed"], registry=r
        )
        self.dead_lettered = Counter(
            "cdr_stream_records_dead_lettered", "Rows committed to the dead-letter topic.", ["feed", "rule"], registry=r
        )
        self.dropped = Counter(
            "cdr_stream_records_dropped",
            "Rows not published because they were already delivered.",
            ["feed", "reason"],
            registry=r,
        )
        self.committed = Counter(
            "cdr_stream_transactions_committed", "Kafka transactions committed.", ["feed"], registry=r
        )
        self.aborted = Counter(
            "cdr_stream_transactions_aborted",
            "Kafka transactions aborted or left in doubt (the feed resumes from the stored offset).",
            ["feed"],
            registry=r,
        )
        self.commit_duration = Histogram(
            "cdr_stream_commit_duration_seconds",
            "One Kafka transaction, from the first send to the commit.",
            ["feed"],
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.last_committed_id = Gauge(
            "cdr_stream_last_committed_id", "The stored offset: the highest ID committed.", ["feed"], registry=r
        )
        self.newest_record = Gauge(
            "cdr_stream_newest_record_timestamp_seconds",
            "Call time (Unix seconds, UTC) of the newest record published.",
            ["feed"],
            registry=r,
        )
        self.last_commit = Gauge(
            "cdr_stream_last_commit_timestamp_seconds",
            "When the last transaction that carried records committed (Unix seconds).",
            ["feed"],
            registry=r,
        )
        self.last_success = Gauge(
            "cdr_stream_last_successful_poll_timestamp_seconds",
            "When the last feed query succeeded (Unix seconds).",
            ["feed"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "cdr_stream_consecutive_failures", "Failures since the last successful query.", ["feed"], registry=r
        )
        self.ready = Gauge(
            "cdr_stream_ready", "1 when the feed has loaded its offset and started its producer.", ["feed"], registry=r
        )
        self.unreadable = Counter(
            "cdr_stream_unreadable_fields",
            "Values of published records that could not be read: published as null, the raw value in the event.",
            ["feed", "field"],
            registry=r,
        )
        self.file_anomalies = Counter(
            "cdr_stream_file_anomalies",
            "Files an SFTP feed did not publish (again) because they changed, shrank or were renamed after commit.",
            ["feed", "reason"],
            registry=r,
        )
        self.spill_bytes = Gauge(
            "cdr_stream_spill_bytes",
            "Disk taken now by the files of a large answer being sorted by ID (tmp_dir).",
            ["feed"],
            registry=r,
        )
        self.files_unmatched = Counter(
            "cdr_stream_files_unmatched",
            "Files in an SFTP feed's directory whose name file_pattern does not match: not collected "
            "(each name counted once per process).",
            ["feed"],
            registry=r,
        )
        self.feed_state = Gauge(
            "cdr_stream_feed_state",
            "1 for the state the feed is in (starting, catching_up, idle, backing_off, failed), 0 for the others.",
            ["feed", "state"],
            registry=r,
        )
        self.feed_stopped = Gauge(
            "cdr_stream_feed_stopped",
            "1 when the feed stopped for good (fenced by another instance, or given up) until a restart.",
            ["feed", "reason"],
            registry=r,
        )
        for feed in feeds:
            self._create_series(feed)
            self.ready.labels(feed).set_function(partial(_ready, health, feed))
            if space is not None:
                self.spill_bytes.labels(feed).set_function(partial(space.used, feed))
            else:
                self.spill_bytes.labels(feed).set(0)
            for state in FEED_STATES:
                self.feed_state.labels(feed, state).set_function(partial(_in_state, health, feed, state))

    def _create_series(self, feed: str) -> None:
        for family in (self.polls, self.fetched, self.published, self.committed, self.aborted, self.files_unmatched):
            family.labels(feed)
        for histogram in (self.poll_duration, self.commit_duration):
            histogram.labels(feed)
        for gauge in (
            self.last_committed_id,
            self.newest_record,
            self.last_commit,
            self.last_success,
            self.consecutive_failures,
        ):
            gauge.labels(feed).set(0)
        for reason in FAILURE_REASONS:
            self.poll_failures.labels(feed, reason)
        for rule in DEAD_LETTER_RULES:
            self.dead_lettered.labels(feed, rule)
        for dropped in DROP_REASONS:
            self.dropped.labels(feed, dropped)
        for name in UNREADABLE_FIELDS:
            self.unreadable.labels(feed, name)
        for anomaly in FILE_ANOMALIES:
            self.file_anomalies.labels(feed, anomaly)
        for reason in FAILURE_REASONS:
            self.feed_stopped.labels(feed, reason).set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- PollObserver ------------------------------------------------------------------------------

    def offset_loaded(self, feed: str, last_id: int) -> None:
        self.last_committed_id.labels(feed).set(last_id)

    def page_committed(self, feed: str, page: PageReport) -> None:
        self.published.labels(feed).inc(page.events)
        for rule, count in page.dead_letter_rules.items():
            self.dead_lettered.labels(feed, _bounded(rule, DEAD_LETTER_RULES)).inc(count)
        for name, count in page.unreadable_fields.items():
            self.unreadable.labels(feed, _bounded(name, UNREADABLE_FIELDS)).inc(count)
        self.dropped.labels(feed, "already_seen").inc(page.dropped_seen)
        self.dropped.labels(feed, "duplicate_in_answer").inc(page.dropped_duplicate)
        self.last_committed_id.labels(feed).set(page.last_id)
        if not page.committed:
            return
        self.committed.labels(feed).inc()
        self.commit_duration.labels(feed).observe(page.commit_seconds)
        if page.events or page.dead_letters:
            self.last_commit.labels(feed).set(self._clock())
        if page.newest_call_ms is not None:
            # Out-of-order answers may publish an older call after a newer one: freshness never moves back.
            newest = max(self._newest_call.get(feed, 0.0), page.newest_call_ms / 1000)
            self._newest_call[feed] = newest
            self.newest_record.labels(feed).set(newest)

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        self.polls.labels(feed).inc()
        self.poll_duration.labels(feed).observe(seconds)
        self.fetched.labels(feed).inc(rows)
        self.last_success.labels(feed).set(self._clock())
        self.consecutive_failures.labels(feed).set(0)

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.polls.labels(feed).inc()
        self.poll_failures.labels(feed, reason).inc()
        self.consecutive_failures.labels(feed).set(consecutive)
        if reason in _ABORTING_REASONS:
            self.aborted.labels(feed).inc()

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        self.polls.labels(feed).inc()
        self.poll_failures.labels(feed, reason).inc()
        self.consecutive_failures.labels(feed).set(consecutive)
        if retry_in is None:
            self.feed_stopped.labels(feed, reason).set(1)

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        if reason == FileAnomaly.NOT_CDR_FILE:
            self.files_unmatched.labels(feed).inc()
            return
        self.file_anomalies.labels(feed, _bounded(reason, FILE_ANOMALIES)).inc()


class ReplayMetrics:
    """What one `dlq replay` process did, for a Prometheus textfile collector (`--metrics-file`): a
    ReplayObserver. The series exist at 0 from the start; `outcome` and `rule` come from closed sets."""

    def __init__(self, feed: str, registry: CollectorRegistry | None = None) -> None:
        self.feed = feed
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.dead_letters = Counter(
            "cdr_stream_dead_letters_replayed",
            "Dead letters a dlq replay went through, by outcome (replayed: published as an event now).",
            ["feed", "outcome"],
            registry=r,
        )
        self.still_failing = Counter(
            "cdr_stream_dead_letters_still_failing",
            "Dead letters a dlq replay left in place because today's rules refuse them too, by rule.",
            ["feed", "rule"],
            registry=r,
        )
        self.transactions = Counter(
            "cdr_stream_dlq_replay_transactions_committed", "Transactions a dlq replay committed.", ["feed"], registry=r
        )
        self.retries = Counter(
            "cdr_stream_dlq_replay_retries", "Kafka failures a dlq replay retried.", ["feed"], registry=r
        )
        for outcome in REPLAY_OUTCOMES:
            self.dead_letters.labels(feed, outcome)
        for rule in DEAD_LETTER_RULES:
            self.still_failing.labels(feed, rule)
        self.transactions.labels(feed)
        self.retries.labels(feed)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def write(self, path: Path) -> None:
        """Write the metrics for node_exporter's textfile collector (atomically: a temporary file, renamed)."""
        write_to_textfile(str(path), self.registry)

    # --- ReplayObserver ----------------------------------------------------------------------------

    def started(self, identity: ReplayIdentity, progress: ReplayProgress, candidates: int) -> None:
        """Nothing to count."""

    def committed(self, progress: ReplayProgress, outcome: ChunkOutcome) -> None:
        self.transactions.labels(self.feed).inc()
        counts = {
            "replayed": outcome.replayed,
            "already_published": outcome.already_published,
            "still_failing": sum(outcome.still_failing.values()),
            "skipped": sum(outcome.skipped.values()),
        }
        for name, count in counts.items():
            self.dead_letters.labels(self.feed, name).inc(count)
        for rule, count in outcome.still_failing.items():
            self.still_failing.labels(self.feed, _bounded(rule, DEAD_LETTER_RULES)).inc(count)

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.retries.labels(self.feed).inc()

    def finished(self, progress: ReplayProgress) -> None:
        """Nothing to count: every chunk was counted when it committed."""
