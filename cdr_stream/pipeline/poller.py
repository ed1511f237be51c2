"""The live poll loop of one feed: ask the source, validate, commit, move the offset; catch up at once,
then wait. It runs on the one loop (`loop.CommitLoop`).

The loop is the same whatever the rows come from (the web service, or files over SFTP): a `Source` turns
one poll into batches of rows, each carrying the source's position after it, and each batch commits in
one transaction with that position and the new highest ID. The stored state only moves after the
transaction that carries it has committed. A failure final for the feed (a refused login, an unknown host
key) makes the feed `failed`: tried again on a long backoff with its secrets read again, or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from cdr_stream.config import FeedSettings
from cdr_stream.errors import CdrStreamError, ConfigError, FailureReason, FeedStopped, WriteError, WriterFenced
from cdr_stream.kafka.base import Writer
from cdr_stream.kafka.state import FilesPosition, StoredOffset
from cdr_stream.ops.logs import describe_error, redact_also
from cdr_stream.pipeline.backoff import Backoff
from cdr_stream.pipeline.loop import CommitLoop, pause_unless_stopping
from cdr_stream.pipeline.observer import PageReport, PollObserver
from cdr_stream.records.processor import ProcessedChunk, RecordProcessor
from cdr_stream.sources.base import Batch, Source

log = logging.getLogger(__name__)

LoadState = Callable[[], Awaitable[StoredOffset]]
#: True when another instance of the feed may be running (the presence group has more than one member).
RivalCheck = Callable[[], Awaitable[bool]]
#: Opens a feed's source anew from its settings (with secrets read again).
OpenSource = Callable[[FeedSettings], Source]
#: How often a waiting feed asks whether another instance started. A fenced writer only learns it is
#: fenced from its next transaction; an idle one would otherwise run on as a zombie until rows arrive.
RIVAL_CHECK_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What a feed does after a failure final for it: wait long (minutes), then try again with its secrets
    read again; after `give_up_after` such attempts in a row (0: never) it stops for good."""

    retry_initial_seconds: float = 60.0
    retry_max_seconds: float = 900.0
    give_up_after: int = 0

    @property
    def backoff(self) -> Backoff:
        # Never short: each attempt of a refused login is one more refusal in the provider's logs.
        return Backoff(self.retry_initial_seconds, self.retry_max_seconds, floor_share=0.5)


class FeedPoller:
    """Runs one feed until `stopping` is set; raises FeedStopped when the feed stops for good (fenced by
    another instance, or given up after `failure_policy.give_up_after` final failures in a row)."""

    def __init__(
        self,
        settings: FeedSettings,
        source: Source,
        writer: Writer,
        load_state: LoadState,
        observer: PollObserver,
        processor: RecordProcessor | None = None,
        rivals: RivalCheck | None = None,
        failure_policy: FailurePolicy | None = None,
        open_source: OpenSource | None = None,
        rival_check_seconds: float = RIVAL_CHECK_SECONDS,
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
        self._rival_check_seconds = rival_check_seconds
        self._next_rival_check = time.monotonic() + rival_check_seconds
        self._policy = failure_policy or FailurePolicy()
        self._open_source = open_source
        backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self.loop = CommitLoop(self, writer, backoff, self, self._failed_finally, pause=self._wait)

    @property
    def feed(self) -> str:
        return self.settings.name

    @property
    def last_id(self) -> int | None:
        return self.state.last_id if self.state is not None else None

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping` is set; raises FeedStopped when the feed stops for good."""
        try:
            await self.loop.run(stopping)
        except WriterFenced as exc:
            # Another instance owns the feed now: retrying would only fence it back.
            self.observer.feed_failed(
                self.feed, reason=FailureReason.FENCED, message=str(exc), retry_in=None, consecutive=1
            )
            raise FeedStopped(self.feed, FailureReason.FENCED, str(exc)) from exc

    # --- loop.Attempts -------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self.state is not None

    async def load(self) -> None:
        self.state = await self._load_state()
        self.observer.offset_loaded(self.feed, self.state.last_id)

    def forget(self) -> None:
        self.state = None

    async def attempt(self, stopping: asyncio.Event) -> float:
        if self.loop.final_failures:
            await self._reopen_source()
        advanced = await self.poll_once(stopping)
        return 0.0 if advanced else self.settings.poll_interval_seconds

    # --- loop.RetryObserver and the final failures ---------------------------------------------------------

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.observer.poll_failed(self.feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    async def _failed_finally(self, exc: CdrStreamError, failures: int, final_failures: int) -> float:
        """Report a failure final for the feed; the wait before the next attempt, or FeedStopped."""
        reason, message = exc.reason, str(exc)
        policy = self._policy
        if policy.give_up_after and final_failures >= policy.give_up_after:
            self.observer.feed_failed(self.feed, reason=reason, message=message, retry_in=None, consecutive=failures)
            raise FeedStopped(self.feed, reason, message)
        wait = policy.backoff.delay(final_failures)
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

    async def _wait(self, stopping: asyncio.Event, seconds: float) -> None:
        """Sleep until a stop or `seconds` have passed; meanwhile, if another instance of this feed shows
        up, commit the unchanged offset: a fenced writer fails with WriterFenced and this one stops."""
        deadline = time.monotonic() + seconds
        while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._rivals is not None and time.monotonic() >= self._next_rival_check:
                self._next_rival_check = time.monotonic() + self._rival_check_seconds
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
            await pause_unless_stopping(stopping, left if self._rivals is None else min(left, until_check))

    # --- one poll ------------------------------------------------------------------------------------

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
