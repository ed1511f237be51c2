"""A PollObserver that logs progress: one line per committed transaction, totals per feed."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from cdr_stream.poller import PageReport

log = logging.getLogger("cdr_stream.progress")


@dataclass(slots=True)
class FeedTotals:
    pages: int = 0
    published: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    errors: int = 0
    file_anomalies: int = 0
    last_id: int | None = None


class ProgressLog:
    def __init__(self) -> None:
        self.totals: defaultdict[str, FeedTotals] = defaultdict(FeedTotals)

    def offset_loaded(self, feed: str, last_id: int) -> None:
        self.totals[feed].last_id = last_id
        log.info("feed %s resumes after ID %d", feed, last_id, extra={"feed": feed, "last_id": last_id})

    def page_committed(self, feed: str, page: PageReport) -> None:
        totals = self.totals[feed]
        totals.pages += 1
        totals.published += page.events
        totals.dead_lettered += page.dead_letters
        totals.dropped += page.dropped_seen + page.dropped_duplicate
        totals.last_id = page.last_id
        log.info(
            "feed %s committed IDs %d..%d: %d published, %d dead-lettered, %d dropped in %.3f s | totals: "
            "%d pages, %d published, %d dead-lettered, %d dropped, %d errors, last ID %d",
            feed,
            page.from_id + 1,
            page.last_id,
            page.events,
            page.dead_letters,
            page.dropped_seen + page.dropped_duplicate,
            page.commit_seconds,
            totals.pages,
            totals.published,
            totals.dead_lettered,
            totals.dropped,
            totals.errors,
            page.last_id,
            extra={
                "feed": feed,
                "from_id": page.from_id + 1,
                "last_id": page.last_id,
                "published": page.events,
                "dead_lettered": page.dead_letters,
                "dropped": page.dropped_seen + page.dropped_duplicate,
                "commit_seconds": round(page.commit_seconds, 4),
            },
        )

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        log.debug(
            "feed %s poll done: %d rows in %.3f s",
            feed,
            rows,
            seconds,
            extra={"feed": feed, "rows": rows, "poll_seconds": round(seconds, 4)},
        )

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
        self.totals[feed].errors += 1
        log.warning(
            "feed %s: %s (%s); retry %d in %.1f s",
            feed,
            message,
            reason,
            consecutive,
            retry_in,
            extra={"feed": feed, "reason": reason, "consecutive": consecutive, "retry_in_seconds": round(retry_in, 2)},
        )

    def file_anomaly(self, feed: str, *, name: str, reason: str, message: str) -> None:
        self.totals[feed].file_anomalies += 1
        log.warning("feed %s: %s", feed, message, extra={"feed": feed, "file": name, "reason": reason})
