"""Liveness and readiness of each feed, learnt from the poll loop's own reports (a PollObserver).

Ready: the feed has loaded its stored offset, which it does right after starting its producer; it stops
being ready when a Kafka failure makes it rebuild the producer, until the offset is loaded again.

Alive: the feed's loop has reported something (a poll, a failure, a commit) within its wedge limit, which
is longer than anything a healthy loop waits: the poll interval, the longest retry delay, and one query's
timeouts. A feed that has not reported yet (the connector is still starting, perhaps retrying an
unreachable Kafka) counts as alive: restarting the pod would not make Kafka come back sooner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cdr_stream.config import FeedSettings, Settings
from cdr_stream.poller import KAFKA_REASONS, PageReport

MIN_WEDGE_SECONDS: Final = 300.0


def wedge_limit(feed: FeedSettings, commit_timeout_seconds: float) -> float:
    """Seconds of silence after which a feed's loop is considered stuck."""
    longest_wait = max(3 * feed.poll_interval_seconds, feed.backoff_max_seconds, MIN_WEDGE_SECONDS)
    one_query = feed.connect_timeout_seconds + feed.read_timeout_seconds + commit_timeout_seconds
    return longest_wait + one_query


@dataclass(slots=True)
class _FeedStatus:
    wedge_limit: float
    ready: bool = False
    last_report: float | None = None
    last_id: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: dict[str, dict[str, object]]


class FeedHealth:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        commit_timeout = settings.kafka.commit_timeout_seconds
        self._feeds = {feed.name: _FeedStatus(wedge_limit(feed, commit_timeout)) for feed in settings.feeds}

    @property
    def feeds(self) -> Sequence[str]:
        return list(self._feeds)

    def is_ready(self, feed: str) -> bool:
        return self._feeds[feed].ready

    def readiness(self) -> Verdict:
        detail: dict[str, dict[str, object]] = {
            name: {"ready": status.ready, "last_id": status.last_id} for name, status in self._feeds.items()
        }
        return Verdict(all(status.ready for status in self._feeds.values()), detail)

    def liveness(self) -> Verdict:
        now = self._clock()
        detail: dict[str, dict[str, object]] = {}
        ok = True
        for name, status in self._feeds.items():
            silent = None if status.last_report is None else round(now - status.last_report, 1)
            alive = silent is None or silent <= status.wedge_limit
            ok = ok and alive
            detail[name] = {"alive": alive, "silent_seconds": silent, "wedge_limit_seconds": status.wedge_limit}
        return Verdict(ok, detail)

    def _heard(self, feed: str) -> _FeedStatus:
        status = self._feeds[feed]
        status.last_report = self._clock()
        return status

    # --- PollObserver ------------------------------------------------------------------------------

    def offset_loaded(self, feed: str, last_id: int) -> None:
        status = self._heard(feed)
        status.ready = True
        status.last_id = last_id

    def page_committed(self, feed: str, page: PageReport) -> None:
        self._heard(feed).last_id = page.last_id

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        self._heard(feed)

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
        status = self._heard(feed)
        if reason in KAFKA_REASONS:
            status.ready = False

    def file_anomaly(self, feed: str, *, name: str, reason: str, message: str) -> None:
        self._heard(feed)

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        self._heard(feed)  # a long read and sort of a huge answer is progress, not a wedge
