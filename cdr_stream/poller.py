"""The poll loop of one feed: ask, validate, commit, move the offset; catch up at once, then wait.

The offset only moves after the transaction that carries it has committed. Any doubt about the Kafka
side (a failed or timed-out commit) rebuilds the writer and re-reads the stored offset, so the loop
always resumes from what Kafka really holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from cdr_stream.backoff import backoff_delay
from cdr_stream.config import FeedSettings
from cdr_stream.feed import FeedClient, FeedError
from cdr_stream.logs import describe_error
from cdr_stream.records import ProcessedChunk, RecordProcessor
from cdr_stream.state import StateReadError
from cdr_stream.writer import CommitUncertain, TransactionalWriter, WriteError, WriterFenced

log = logging.getLogger(__name__)

LoadOffset = Callable[[], Awaitable[int]]
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
    commit_seconds: float = 0.0


class PollObserver(Protocol):
    """Told what each feed's loop does; logging and metrics implement it."""

    def offset_loaded(self, feed: str, last_id: int) -> None: ...

    def page_committed(self, feed: str, page: PageReport) -> None: ...

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None: ...

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None: ...


class FeedPoller:
    """Runs one feed until `stopping` is set; raises only what a restart cannot fix (auth, fencing)."""

    def __init__(
        self,
        settings: FeedSettings,
        client: FeedClient,
        writer: TransactionalWriter,
        load_offset: LoadOffset,
        observer: PollObserver,
        processor: RecordProcessor | None = None,
        rivals: RivalCheck | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.writer = writer
        self._load_offset = load_offset
        self.observer = observer
        self.processor = processor or RecordProcessor(settings.name)
        self.last_id: int | None = None
        self._rivals = rivals
        self._next_rival_check = time.monotonic() + RIVAL_CHECK_SECONDS

    @property
    def feed(self) -> str:
        return self.settings.name

    async def run(self, stopping: asyncio.Event) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                await self._ensure_ready()
                advanced = await self.poll_once(stopping)
            except WriterFenced:
                raise
            except FeedError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                wait = self._failed(exc.reason, str(exc), failures, exc.retry_after)
            except (WriteError, StateReadError, KafkaError, OSError) as exc:
                failures += 1
                wait = self._failed(_kafka_reason(exc), describe_error(exc), failures, None)
                # Whatever Kafka holds now is the truth: rebuild the producer and re-read the offset.
                await self.writer.stop()
                self.last_id = None
            else:
                failures = 0
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
                if self.writer.started and self.last_id is not None and await self._rivals():
                    try:
                        await self.writer.commit(ProcessedChunk(), self.last_id)
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

    async def _ensure_ready(self) -> None:
        if not self.writer.started:
            await self.writer.start()  # fences any older writer of this feed before the offset is read
        if self.last_id is None:
            self.last_id = await self._load_offset()
            self.observer.offset_loaded(self.feed, self.last_id)

    async def poll_once(self, stopping: asyncio.Event) -> bool:
        """One query, committed chunk by chunk. True when the offset moved (there may be more)."""
        assert self.last_id is not None
        from_id = self.last_id
        started = time.monotonic()
        rows_seen = 0
        chunks = self.client.row_chunks(from_id, chunk_rows=self.settings.max_rows_per_transaction)
        async with aclosing(chunks):
            # A stop abandons the query between transactions: what was not committed is asked for again.
            while (rows := await _next_unless_stopping(chunks, stopping)) is not None:
                rows_seen += len(rows)
                chunk = self.processor.process_chunk(rows, floor_id=self.last_id)
                await self._commit(chunk)
        advanced = self.last_id > from_id
        self.observer.poll_finished(self.feed, seconds=time.monotonic() - started, rows=rows_seen, advanced=advanced)
        return advanced

    async def _commit(self, chunk: ProcessedChunk) -> None:
        assert self.last_id is not None
        new_last = max(self.last_id, chunk.max_id or 0)
        if new_last == self.last_id and not chunk.dead_letters:
            if chunk.dropped_seen or chunk.dropped_duplicate:
                self._report(chunk, new_last, 0.0)
            return
        started = time.monotonic()
        await self.writer.commit(chunk, new_last)
        self._report(chunk, new_last, time.monotonic() - started)
        self.last_id = new_last

    def _report(self, chunk: ProcessedChunk, new_last: int, seconds: float) -> None:
        assert self.last_id is not None
        self.observer.page_committed(
            self.feed,
            PageReport(
                from_id=self.last_id,
                last_id=new_last,
                events=len(chunk.events),
                dead_letters=len(chunk.dead_letters),
                dropped_seen=chunk.dropped_seen,
                dropped_duplicate=chunk.dropped_duplicate,
                dead_letter_rules=Counter(letter.rule for letter in chunk.dead_letters),
                newest_call_ms=max((event.timestamp_ms for event in chunk.events), default=None),
                commit_seconds=seconds,
            ),
        )


def _kafka_reason(exc: BaseException) -> str:
    if isinstance(exc, StateReadError):
        return "state_read"
    if isinstance(exc, WriteError):
        return "commit_timeout" if isinstance(exc, CommitUncertain) else "commit_failed"
    return "kafka"


async def _next_unless_stopping(chunks: AsyncIterator[list[Any]], stopping: asyncio.Event) -> list[Any] | None:
    """The next chunk of the answer; None at its end, or as soon as a stop is requested."""
    if stopping.is_set():
        return None
    fetch = asyncio.ensure_future(anext(chunks, None))
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
