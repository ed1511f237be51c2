"""The poll loop of one feed: ask the source, validate, commit, move the offset; catch up at once, then wait.

The loop is the same whatever the rows come from (the web service, or files over SFTP): a `Source` turns
one poll into batches of rows, each carrying the source's position after it, and the loop commits every
batch in one transaction with that position and the new highest ID. The stored state only moves after
the transaction that carries it has committed. Any doubt about the Kafka side (a failed or timed-out
commit) rebuilds the writer and re-reads the stored state, so the loop always resumes from what Kafka
really holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from cdr_stream.config import ConfigError, FeedSettings
from cdr_stream.kafka.state import FilesPosition, StateReadError, StoredOffset
from cdr_stream.kafka.writer import CommitUncertain, TransactionalWriter, WriteError, WriterFenced
from cdr_stream.ops.logs import describe_error, redact_also
from cdr_stream.pipeline.backoff import backoff_delay
from cdr_stream.records.processor import ProcessedChunk, RecordProcessor
from cdr_stream.sources.http import FeedClient, FeedError

log = logging.getLogger(__name__)

LoadState = Callable[[], Awaitable[StoredOffset]]
#: True when another instance of the feed may be running (the presence group has more than one member).
RivalCheck = Callable[[], Awaitable[bool]]
#: How often a waiting feed asks whether another instance started. A fenced writer only learns it is
#: fenced from its next transaction; an idle one would otherwise run on as a zombie until rows arrive.
RIVAL_CHECK_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class PageReport:
    """What one committed transaction carried."""

    from_id: int
    last_id: int
    events: int
    dead_letters: int
    dropped_seen: int
    dropped_duplicate: int
    dead_letter_rules: Counter[str] = field(default_factory=Counter)
    newest_call_ms: int | None = None
    #: Values published as null because they could not be read, by field.
    unreadable_fields: Counter[str] = field(default_factory=Counter)
    commit_seconds: float = 0.0
    #: False when nothing needed a transaction (every row was already delivered).
    committed: bool = True


class PollObserver(Protocol):
    """Told what each feed's loop does; logging and metrics implement it."""

    def offset_loaded(self, feed: str, last_id: int) -> None: ...

    def page_committed(self, feed: str, page: PageReport) -> None: ...

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None: ...

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None: ...

    def feed_failed(self, feed: str, *, reason: str, message: str, retry_in: float | None, consecutive: int) -> None:
        """A failure final for the feed (login refused, host key, fenced...): the feed is `failed` and tried
        again in `retry_in` seconds with its secrets read again, or, when `retry_in` is None, stopped for good."""

    def file_anomaly(self, feed: str, *, name: str, reason: str, message: str) -> None:
        """A file source met a file it will not (re-)publish as listed: changed after commit, renamed..."""

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        """An answer too large to sort in memory is being sorted on disk: `rows` spilled so far."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one poll, committed together, and the source's position once they are committed.

    `files` is the whole position of a file source after these rows; None for the web service, whose
    position is the highest ID alone.
    """

    rows: list[Any]
    files: FilesPosition | None = None
    #: Rows of the answer dropped before these (re-sent at or below the stored offset, or repeated).
    dropped_seen: int = 0
    dropped_duplicate: int = 0


class Source(Protocol):
    """Where a feed's rows come from. Raises FeedError (retryable or not) for every way a poll can fail."""

    def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        """One poll: the rows after the committed `state`, batch by batch (at most one batch held at once)."""

    async def close(self) -> None: ...


class HttpSource:
    """The billing feed web service: one query from the stored highest ID, its answer in ID order, in chunks."""

    def __init__(self, client: FeedClient, chunk_rows: int, observer: PollObserver | None = None) -> None:
        self.client = client
        self._chunk_rows = chunk_rows
        self._observer = observer

    def _on_run(self, rows: int, disk_bytes: int) -> None:
        if self._observer is not None:
            self._observer.answer_sorting(self.client.settings.name, rows=rows, disk_bytes=disk_bytes)

    async def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        chunks = self.client.ordered_chunks(state.last_id, chunk_rows=self._chunk_rows, on_run=self._on_run)
        async for chunk in chunks:
            yield Batch(chunk.rows, dropped_seen=chunk.dropped_seen, dropped_duplicate=chunk.dropped_duplicate)

    async def close(self) -> None:
        await self.client.close()


class ObserverGroup:
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

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
        for observer in self.observers:
            observer.poll_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    def feed_failed(self, feed: str, *, reason: str, message: str, retry_in: float | None, consecutive: int) -> None:
        for observer in self.observers:
            observer.feed_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    def file_anomaly(self, feed: str, *, name: str, reason: str, message: str) -> None:
        for observer in self.observers:
            observer.file_anomaly(feed, name=name, reason=reason, message=message)

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        for observer in self.observers:
            observer.answer_sorting(feed, rows=rows, disk_bytes=disk_bytes)


#: The reason of a feed stopped because another instance took over its transactional id.
FENCED = "fenced"
#: The reason of a feed whose secret could not be read again (a config problem seen at run time).
CONFIG = "config"
#: The reason of a feed whose task ended with an unexpected error.
CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What a feed does after a failure final for it: wait long (minutes), then try again with its secrets
    read again; after `give_up_after` such attempts in a row (0: never) it stops for good."""

    retry_initial_seconds: float = 60.0
    retry_max_seconds: float = 900.0
    give_up_after: int = 0


class FeedStopped(Exception):
    """The feed stopped for good: fenced by another instance, or given up after too many failed attempts."""

    def __init__(self, feed: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.feed = feed
        self.reason = reason

    @property
    def fenced(self) -> bool:
        return self.reason == FENCED


#: Opens a feed's source anew from its settings (with secrets read again).
OpenSource = Callable[[FeedSettings], Source]


class FeedPoller:
    """Runs one feed until `stopping` is set. A failure final for the feed (login refused, host key) makes it
    `failed`, tried again on the long backoff of `failure_policy`; raises FeedStopped when it stops for good."""

    def __init__(
        self,
        settings: FeedSettings,
        source: Source,
        writer: TransactionalWriter,
        load_state: LoadState,
        observer: PollObserver,
        processor: RecordProcessor | None = None,
        rivals: RivalCheck | None = None,
        failure_policy: FailurePolicy | None = None,
        open_source: OpenSource | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.writer = writer
        self._load_state = load_state
        self.observer = observer
        self.processor = processor or RecordProcessor(settings.name)
        #: What Kafka holds for this feed; None until read, and again after any doubt about it.
        self.state: StoredOffset | None = None
        self._rivals = rivals
        self._next_rival_check = time.monotonic() + RIVAL_CHECK_SECONDS
        self._policy = failure_policy or FailurePolicy()
        self._open_source = open_source

    @property
    def feed(self) -> str:
        return self.settings.name

    @property
    def last_id(self) -> int | None:
        return self.state.last_id if self.state is not None else None

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping` is set; raises FeedStopped when the feed stops for good."""
        try:
            await self._run(stopping)
        except WriterFenced as exc:
            # Another instance owns the feed now: retrying would only fence it back.
            self.observer.feed_failed(self.feed, reason=FENCED, message=str(exc), retry_in=None, consecutive=1)
            raise FeedStopped(self.feed, FENCED, str(exc)) from exc

    async def _run(self, stopping: asyncio.Event) -> None:
        failures = 0  # failed attempts in a row, of any kind
        final_failures = 0  # of those, the ones final for the feed (they lead to `failed`)
        while not stopping.is_set():
            try:
                if final_failures:
                    await self._reopen_source()
                await self._ensure_ready()
                advanced = await self.poll_once(stopping)
            except WriterFenced:
                raise
            except (FeedError, ConfigError) as exc:
                failures += 1
                if isinstance(exc, FeedError) and exc.retryable:
                    wait = self._failed(exc.reason, str(exc), failures, exc.retry_after)
                else:
                    final_failures += 1
                    reason = exc.reason if isinstance(exc, FeedError) else CONFIG
                    wait = self._failed_finally(reason, str(exc), failures, final_failures)
            except (WriteError, StateReadError, KafkaError, OSError) as exc:
                failures += 1
                wait = self._failed(_kafka_reason(exc), describe_error(exc), failures, None)
                # Whatever Kafka holds now is the truth: rebuild the producer and re-read the offset.
                await self.writer.stop()
                self.state = None
            else:
                failures = final_failures = 0
                wait = 0.0 if advanced else self.settings.poll_interval_seconds
            if wait > 0:
                await self._wait(stopping, wait)

    async def _wait(self, stopping: asyncio.Event, seconds: float) -> None:
        """Sleep until a stop or `seconds` have passed; meanwhile, if another instance of this feed shows
        up, commit the unchanged offset: a fenced writer fails with WriterFenced and this one stops."""
        deadline = time.monotonic() + seconds
        while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._rivals is not None and time.monotonic() >= self._next_rival_check:
                self._next_rival_check = time.monotonic() + RIVAL_CHECK_SECONDS
                state = self.state
                if self.writer.started and state is not None and await self._rivals():
                    try:
                        # The whole stored position, files included: this commit only proves who writes.
                        await self.writer.commit(ProcessedChunk(), state.last_id, files=state.files)
                    except WriterFenced:
                        raise
                    except WriteError as exc:  # not a verdict on fencing; the next poll meets any Kafka trouble
                        log.debug("rival check commit failed: %s", exc)
            until_check = max(0.0, self._next_rival_check - time.monotonic())
            await _sleep_unless(stopping, left if self._rivals is None else min(left, until_check))

    def _failed(self, reason: str, message: str, failures: int, retry_after: float | None) -> float:
        wait = backoff_delay(
            failures,
            initial=self.settings.backoff_initial_seconds,
            cap=self.settings.backoff_max_seconds,
            retry_after=retry_after,
        )
        self.observer.poll_failed(self.feed, reason=reason, message=message, retry_in=wait, consecutive=failures)
        return wait

    def _failed_finally(self, reason: str, message: str, failures: int, final_failures: int) -> float:
        """Report a failure final for the feed; the wait before the next attempt, or FeedStopped."""
        policy = self._policy
        if policy.give_up_after and final_failures >= policy.give_up_after:
            self.observer.feed_failed(self.feed, reason=reason, message=message, retry_in=None, consecutive=failures)
            raise FeedStopped(self.feed, reason, message)
        # Never short: each attempt of a refused login is one more refusal in the provider's logs.
        wait = backoff_delay(
            final_failures, initial=policy.retry_initial_seconds, cap=policy.retry_max_seconds, floor_share=0.5
        )
        self.observer.feed_failed(self.feed, reason=reason, message=message, retry_in=wait, consecutive=failures)
        return wait

    async def _reopen_source(self) -> None:
        """Read the feed's secrets again (a rotated Secret shows up in its file) and open the source anew.

        Raises ConfigError when a secret can no longer be read."""
        if self._open_source is None:
            return
        settings = self.settings.with_fresh_secrets()
        redact_also(settings.secrets())
        try:
            source = self._open_source(settings)
        except OSError as exc:  # a ca_file that cannot be read any more
            raise ConfigError(f"feeds ({self.feed}): the source cannot be opened: {describe_error(exc)}") from None
        old, self.source = self.source, source
        self.settings = settings
        await old.close()

    async def _ensure_ready(self) -> None:
        if not self.writer.started:
            await self.writer.start()  # fences any older writer of this feed before the offset is read
        if self.state is None:
            self.state = await self._load_state()
            self.observer.offset_loaded(self.feed, self.state.last_id)

    async def poll_once(self, stopping: asyncio.Event) -> bool:
        """One poll, committed batch by batch. True when the position moved (there may be more)."""
        before = self.state
        assert before is not None
        started = time.monotonic()
        rows_seen = 0
        batches = self.source.batches(before)
        async with aclosing(batches):
            # A stop abandons the poll between transactions: what was not committed is asked for again.
            while (batch := await _next_unless_stopping(batches, stopping)) is not None:
                rows_seen += len(batch.rows) + batch.dropped_seen + batch.dropped_duplicate
                assert self.state is not None
                chunk = self.processor.process_chunk(batch.rows, floor_id=self.state.last_id)
                chunk.dropped_seen += batch.dropped_seen
                chunk.dropped_duplicate += batch.dropped_duplicate
                await self._commit(chunk, batch.files)
        assert self.state is not None
        advanced = self.state.last_id > before.last_id or self.state.files != before.files
        self.observer.poll_finished(self.feed, seconds=time.monotonic() - started, rows=rows_seen, advanced=advanced)
        return advanced

    async def _commit(self, chunk: ProcessedChunk, files: FilesPosition | None) -> None:
        state = self.state
        assert state is not None
        new_last = max(state.last_id, chunk.max_id or 0)
        if new_last == state.last_id and not chunk.dead_letters and files == state.files:
            if chunk.dropped_seen or chunk.dropped_duplicate:
                self._report(chunk, state.last_id, new_last, 0.0, committed=False)
            return
        started = time.monotonic()
        await self.writer.commit(chunk, new_last, files=files)
        self._report(chunk, state.last_id, new_last, time.monotonic() - started, committed=True)
        self.state = StoredOffset(self.feed, new_last, files=files)

    def _report(self, chunk: ProcessedChunk, from_id: int, new_last: int, seconds: float, *, committed: bool) -> None:
        self.observer.page_committed(
            self.feed,
            PageReport(
                from_id=from_id,
                last_id=new_last,
                events=len(chunk.events),
                dead_letters=len(chunk.dead_letters),
                dropped_seen=chunk.dropped_seen,
                dropped_duplicate=chunk.dropped_duplicate,
                dead_letter_rules=Counter(letter.rule for letter in chunk.dead_letters),
                newest_call_ms=max((event.timestamp_ms for event in chunk.events), default=None),
                unreadable_fields=chunk.unreadable_fields,
                commit_seconds=seconds,
                committed=committed,
            ),
        )


#: The failure reasons after which the poller rebuilds its producer and re-reads the stored offset.
KAFKA_REASONS = frozenset({"state_read", "commit_timeout", "commit_failed", "kafka"})


def _kafka_reason(exc: BaseException) -> str:
    if isinstance(exc, StateReadError):
        return "state_read"
    if isinstance(exc, WriteError):
        return "commit_timeout" if isinstance(exc, CommitUncertain) else "commit_failed"
    return "kafka"


async def _next_unless_stopping(batches: AsyncIterator[Batch], stopping: asyncio.Event) -> Batch | None:
    """The next batch of the poll; None at its end, or as soon as a stop is requested."""
    if stopping.is_set():
        return None
    fetch = asyncio.ensure_future(anext(batches, None))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        fetch.cancel()
        raise
    finally:
        stop.cancel()
    if fetch.done():
        return fetch.result()
    fetch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fetch
    return None


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
