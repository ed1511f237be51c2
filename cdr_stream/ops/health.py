"""Each feed's state, liveness and readiness, learnt from the poll loop's own reports (a PollObserver).

State: `starting` until the first poll ends; then `catching_up` (a poll moved the offset, the next one
follows at once), `idle` (nothing new; waiting for the poll interval), `backing_off` (a retriable
failure: the feed or Kafka is unreachable, an answer was garbage...) or `failed` (a failure final for
the feed: login refused, host key, fenced, a secret that cannot be read). A failed feed is tried again on
a long backoff unless it stopped for good (`stopped`: fenced, or given up); its siblings go on.

Ready: at least one feed has not failed, and every feed that has not failed has loaded its stored offset,
which it does right after starting its producer. A feed stops being ready when a Kafka failure makes it rebuild
the producer, until the offset is loaded again. A failed feed does not make the process unready: no
restart or routing change fixes a password; the failed-feed alert and /status say which feed and why.

Alive: every feed still running has reported something (a poll, a failure, a commit) within its wedge
limit, which is longer than anything a healthy loop waits: the poll interval, the longest retry delay
(of a failed feed too), and one query's timeouts. A feed that has not reported yet (the connector is
still starting, perhaps retrying an unreachable Kafka) counts as alive: restarting the pod would not
make Kafka come back sooner. A feed stopped for good is left out: the process lives on for the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cdr_stream.config import FeedSettings, Settings
from cdr_stream.errors import KAFKA_REASONS, FailureReason, FileAnomaly
from cdr_stream.pipeline.observer import PageReport, PollObserver

MIN_WEDGE_SECONDS: Final = 300.0

STARTING: Final = "starting"
CATCHING_UP: Final = "catching_up"
IDLE: Final = "idle"
BACKING_OFF: Final = "backing_off"
FAILED: Final = "failed"
#: Every state a feed can be in (the `state` label of cdr_stream_feed_state).
FEED_STATES: Final = (STARTING, CATCHING_UP, IDLE, BACKING_OFF, FAILED)


def wedge_limit(feed: FeedSettings, commit_timeout_seconds: float, failed_retry_max_seconds: float = 0.0) -> float:
    """Seconds of silence after which a feed's loop is considered stuck."""
    longest_wait = max(
        3 * feed.poll_interval_seconds, feed.backoff_max_seconds, failed_retry_max_seconds, MIN_WEDGE_SECONDS
    )
    one_query = feed.connect_timeout_seconds + feed.read_timeout_seconds + commit_timeout_seconds
    return longest_wait + one_query


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    message: str
    at: float  # Unix seconds


@dataclass(slots=True)
class _FeedStatus:
    wedge_limit: float
    poll_interval: float
    state: str = STARTING
    ready: bool = False
    stopped: bool = False
    last_report: float | None = None
    last_id: int | None = None
    last_commit: float | None = None  # Unix seconds
    consecutive_failures: int = 0
    last_failure: Failure | None = None
    next_attempt: float | None = None  # Unix seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: dict[str, dict[str, object]]


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


class FeedHealth(PollObserver):
    """Keeps every feed's state from the poll loop's reports; answers /healthz, /readyz and /status."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        commit_timeout = settings.kafka.commit_timeout_seconds
        self._feeds = {
            feed.name: _FeedStatus(
                wedge_limit(feed, commit_timeout, settings.failed_retry_max_seconds), feed.poll_interval_seconds
            )
            for feed in settings.feeds
        }

    def is_ready(self, feed: str) -> bool:
        return self._feeds[feed].ready

    def state(self, feed: str) -> str:
        return self._feeds[feed].state

    def readiness(self) -> Verdict:
        detail: dict[str, dict[str, object]] = {
            name: {"ready": status.ready, "last_id": status.last_id, "state": status.state}
            for name, status in self._feeds.items()
        }
        statuses = self._feeds.values()
        working = [status for status in statuses if status.state != FAILED]
        ok = bool(working) and all(status.ready for status in working)
        return Verdict(ok, detail)

    def liveness(self) -> Verdict:
        now = self._clock()
        detail: dict[str, dict[str, object]] = {}
        ok = True
        for name, status in self._feeds.items():
            silent = None if status.last_report is None else round(now - status.last_report, 1)
            alive = status.stopped or silent is None or silent <= status.wedge_limit
            ok = ok and alive
            detail[name] = {
                "alive": alive,
                "silent_seconds": silent,
                "wedge_limit_seconds": status.wedge_limit,
                "stopped": status.stopped,
            }
        return Verdict(ok, detail)

    def status(self) -> dict[str, Any]:
        """What /status serves: each feed's state, last failure, last commit and next attempt."""
        feeds: dict[str, dict[str, Any]] = {}
        for name, status in self._feeds.items():
            failure = status.last_failure
            feeds[name] = {
                "state": status.state,
                "reason": failure.reason if status.state == FAILED and failure else None,
                "stopped": status.stopped,
                "ready": status.ready,
                "last_id": status.last_id,
                "last_commit_at": _iso(status.last_commit),
                "consecutive_failures": status.consecutive_failures,
                "last_failure": None
                if failure is None
                else {"reason": failure.reason, "message": failure.message, "at": _iso(failure.at)},
                "next_attempt_at": _iso(status.next_attempt),
            }
        states = [status.state for status in self._feeds.values()]
        overall = "ok" if FAILED not in states else "failed" if set(states) == {FAILED} else "degraded"
        return {"status": overall, "feeds": feeds}

    def _heard(self, feed: str) -> _FeedStatus:
        status = self._feeds[feed]
        status.last_report = self._clock()
        return status

    def _failure(self, status: _FeedStatus, state: str, reason: str, message: str, retry_in: float | None) -> None:
        now = self._wall_clock()
        status.state = state
        status.last_failure = Failure(reason, message, now)
        status.next_attempt = None if retry_in is None else now + retry_in

    # --- PollObserver ------------------------------------------------------------------------------

    def offset_loaded(self, feed: str, last_id: int) -> None:
        status = self._heard(feed)
        status.ready = True
        status.last_id = last_id

    def page_committed(self, feed: str, page: PageReport) -> None:
        status = self._heard(feed)
        status.last_id = page.last_id
        if page.committed and (page.events or page.dead_letters):
            status.last_commit = self._wall_clock()
        status.state = CATCHING_UP
        status.consecutive_failures = 0

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        status = self._heard(feed)
        status.consecutive_failures = 0
        status.state = CATCHING_UP if advanced else IDLE
        status.next_attempt = self._wall_clock() + (0.0 if advanced else status.poll_interval)

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        status = self._heard(feed)
        if reason in KAFKA_REASONS:
            status.ready = False
        status.consecutive_failures = consecutive
        self._failure(status, BACKING_OFF, reason, message, retry_in)

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        status = self._heard(feed)
        status.consecutive_failures = consecutive
        status.stopped = retry_in is None
        if status.stopped:
            status.ready = False
        self._failure(status, FAILED, reason, message, retry_in)

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        self._heard(feed)

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        self._heard(feed)  # a long read and sort of a huge answer is progress, not a wedge
