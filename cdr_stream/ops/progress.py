"""Progress for people: the connector's PollObserver (one log line per committed transaction, totals per
feed), and a backfill's (one line rewritten on a terminal, log lines otherwise)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TextIO

from cdr_stream.errors import FailureReason, FileAnomaly
from cdr_stream.pipeline.backfill import BackfillProgress, RunIdentity
from cdr_stream.pipeline.observer import PageReport, PollObserver
from cdr_stream.records.processor import HEADER_REPLAY
from cdr_stream.sources.http import FeedWindow

log = logging.getLogger("cdr_stream.ops.progress")


@dataclass(slots=True)
class FeedTotals:
    pages: int = 0
    published: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    unreadable: int = 0
    errors: int = 0
    file_anomalies: int = 0
    last_id: int | None = None


class ProgressLog(PollObserver):
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
        unreadable = page.unreadable_fields.total()
        totals.unreadable += unreadable
        totals.last_id = page.last_id
        # The message shows each figure as its field holds it (seconds rounded alike), so that a text line
        # need not repeat any of them after it.
        commit_seconds = round(page.commit_seconds, 4)
        log.info(
            "feed %s committed IDs %d..%d: %d published (%d unreadable values), %d dead-lettered, %d dropped "
            "in %s s | totals: %d pages, %d published, %d dead-lettered, %d dropped, %d errors",
            feed,
            page.from_id + 1,
            page.last_id,
            page.events,
            unreadable,
            page.dead_letters,
            page.dropped_seen + page.dropped_duplicate,
            commit_seconds,
            totals.pages,
            totals.published,
            totals.dead_lettered,
            totals.dropped,
            totals.errors,
            extra={
                "feed": feed,
                "from_id": page.from_id + 1,
                "last_id": page.last_id,
                "published": page.events,
                "dead_lettered": page.dead_letters,
                "unreadable_values": unreadable,
                "dropped": page.dropped_seen + page.dropped_duplicate,
                "commit_seconds": commit_seconds,
            },
        )

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        seconds = round(seconds, 4)
        log.debug(
            "feed %s poll done: %d rows in %s s",
            feed,
            rows,
            seconds,
            extra={"feed": feed, "rows": rows, "poll_seconds": seconds},
        )

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.totals[feed].errors += 1
        retry_in = round(retry_in, 2)
        log.warning(
            "feed %s: %s (%s); retry %d in %s s",
            feed,
            message,
            reason,
            consecutive,
            retry_in,
            extra={"feed": feed, "reason": reason, "consecutive": consecutive, "retry_in_seconds": retry_in},
        )

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        self.totals[feed].errors += 1
        extra = {"feed": feed, "reason": reason, "consecutive": consecutive, "state": "failed"}
        if retry_in is None:
            log.error("feed %s failed: %s (%s); stopped for good", feed, message, reason, extra=extra)
            return
        retry_in = round(retry_in, 2)
        log.error(
            "feed %s failed: %s (%s); the other feeds go on; next attempt in %s s, secrets read again",
            feed,
            message,
            reason,
            retry_in,
            extra={**extra, "retry_in_seconds": retry_in},
        )

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        self.totals[feed].file_anomalies += 1
        log.warning("feed %s: %s", feed, message, extra={"feed": feed, "file": name, "reason": reason})

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        log.info(
            "feed %s: sorting a large answer by ID on disk: %d rows so far, %d MiB",
            feed,
            rows,
            disk_bytes // 2**20,
            extra={"feed": feed, "rows": rows, "disk_bytes": disk_bytes},
        )


class BackfillReport:
    """A BackfillObserver: on a terminal, one line rewritten after every commit; otherwise a log line per
    hour done (and per commit at DEBUG). Rates count the rows this process published."""

    def __init__(self, terminal: TextIO | None = None) -> None:
        self._terminal = terminal
        self._started = time.monotonic()
        self._rows_before = 0
        self._label = ""

    def started(self, identity: RunIdentity, progress: BackfillProgress) -> None:
        self._started = time.monotonic()
        self._rows_before = progress.rows
        self._label = f"{identity.feed} {identity.window.label} -> {identity.topic}"
        if progress.finished:
            state = ": finished earlier, nothing to send (--restart sends the window again as a new run)"
        elif progress.done or progress.rows:
            state = f": resuming with {progress.done} of {progress.hours} hours done and {progress.rows:,} rows sent"
        else:
            state = ""
        log.info("backfill %s: run %s%s", self._label, progress.run, state)

    def line(self, progress: BackfillProgress) -> str:
        rate = (progress.rows - self._rows_before) / max(time.monotonic() - self._started, 1e-6)
        return (
            f"backfill {self._label}: hours {progress.done}/{progress.hours}, {progress.rows:,} rows "
            f"({progress.dead_letters:,} dead-lettered), {rate:,.0f} rows/s"
        )

    def _show(self, progress: BackfillProgress, hour: FeedWindow) -> None:
        assert self._terminal is not None
        at = "" if progress.finished else f", at {hour.day} {hour.hour:02d}:00"
        self._terminal.write(f"\r\x1b[K{self.line(progress)}{at}")
        self._terminal.flush()

    def committed(self, progress: BackfillProgress, hour: FeedWindow) -> None:
        if self._terminal is not None:
            self._show(progress, hour)
        else:
            log.debug("%s; committed up to ID %d", self.line(progress), progress.last_id)

    def hour_done(self, progress: BackfillProgress, hour: FeedWindow) -> None:
        if self._terminal is not None:
            self._show(progress, hour)
        else:
            log.info("%s; %s %02d:00 done", self.line(progress), hour.day, hour.hour)

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self._end_line()
        log.warning("backfill %s: %s (%s); retry %d in %.1f s", self._label, message, reason, consecutive, retry_in)

    def finished(self, progress: BackfillProgress) -> None:
        self._end_line()
        log.info(
            "backfill %s: finished: %d events and %d dead letters over %d hour(s), marked %s: %s",
            self._label,
            progress.events,
            progress.dead_letters,
            progress.hours,
            HEADER_REPLAY,
            progress.run,
        )

    def _end_line(self) -> None:
        if self._terminal is not None:
            self._terminal.write("\n")
            self._terminal.flush()
