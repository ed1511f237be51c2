"""The runs that publish records again: `backfill` (a past window asked from the feed) and `dlq replay`
(dead letters read with today's rules), on the one loop (`loop.CommitLoop`).

A run has its own transactional id, so it neither fences the feed's connector nor is fenced by it, and
its own key in the state topic. Each transaction carries a chunk of records, marked with the cdr-replay
header (the run's id), together with the run's progress: whatever a crash cuts short is aborted, and the
same command afterwards resumes from the last commit.
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from cdr_stream.config import FeedSettings, Settings, TopicSettings
from cdr_stream.errors import CdrStreamError, RunError, WriterFenced
from cdr_stream.kafka.base import Headers, Writer
from cdr_stream.kafka.state import read_state
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.pipeline.backoff import Backoff
from cdr_stream.pipeline.loop import CommitLoop, RetryObserver
from cdr_stream.records.processor import HEADER_REPLAY, ProcessedChunk


class RunProgress(Protocol):
    """What every run's progress has: the run's id, the value of the cdr-replay header it publishes with."""

    @property
    def run(self) -> str: ...


ProgressT = TypeVar("ProgressT", bound=RunProgress)


class RunKey:
    """Names a run in Kafka from a digest of what makes two commands the same run: the feed, what the
    subclass adds (`_identity`), and the destination topic."""

    __slots__ = ()
    #: The first part of the run's key in the state topic; a '/' keeps it apart from the feeds' offsets.
    key_prefix: ClassVar[str]
    #: What the run's id (the cdr-replay header) starts with.
    run_prefix: ClassVar[str] = ""
    feed: str
    topic: str

    def _identity(self) -> tuple[object, ...]:
        raise NotImplementedError

    @property
    def digest(self) -> str:
        text = "\n".join(str(part) for part in (self.feed, *self._identity(), self.topic))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def state_key(self) -> str:
        return f"{self.key_prefix}/{self.feed}/{self.digest}"

    def run_id(self, generation: int) -> str:
        return f"{self.run_prefix}{self.feed}-{self.digest}-{generation}"


class MarkedRun(ABC, Generic[ProgressT]):
    """One run: `await run.run()` loads (or starts) the progress, does the work, returns the final progress.

    Subclasses say how progress is loaded (`_load`), how the work goes (`_work`, committing with
    `_commit`) and how progress is stored (`_encode`). Kafka failures rebuild the producer and read the
    progress again; a retriable feed error is retried with the feed's backoff; anything final raises
    `error`.
    """

    #: The exception raised for what a retry cannot fix.
    error: type[RunError] = RunError
    #: What the messages call a run ("backfill", "dead-letter replay").
    kind = "run"

    def __init__(
        self,
        settings: Settings,
        feed: FeedSettings,
        topics: TopicSettings,
        *,
        state_key: str,
        id_suffix: str,
        observer: RetryObserver,
        headers: Headers = (),
        writer: Writer | None = None,
    ) -> None:
        self.settings = settings
        self.feed = feed
        self.topics = topics
        self.state_key = state_key
        self.writer = writer or TransactionalWriter(settings.kafka, topics, feed.name, id_suffix=id_suffix)
        self.progress: ProgressT | None = None
        self.final: ProgressT | None = None
        self._headers = tuple(headers)
        backoff = Backoff(feed.backoff_initial_seconds, feed.backoff_max_seconds)
        self.loop = CommitLoop(self, self.writer, backoff, observer, self._final_failure)

    async def run(self) -> ProgressT:
        try:
            await self._prepare()
            try:
                await self.loop.run(asyncio.Event())  # a run is stopped by cancelling it
            except WriterFenced:
                raise self.error(
                    f"another process took over this {self.kind} (transactional id {self.writer.transactional_id!r})"
                ) from None
            assert self.final is not None  # the loop returns only once the work is done
            return self.final
        finally:
            await self.writer.stop()
            await self._close()

    async def _prepare(self) -> None:
        await prepare_topics(self.settings.kafka, self.topics)

    async def _final_failure(self, exc: CdrStreamError, failures: int, final_failures: int) -> float:
        raise self.error(str(exc)) from None

    # --- loop.Attempts -------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self.progress is not None

    async def load(self) -> None:
        self.progress = await self._load()
        self._started(self.progress)

    def forget(self) -> None:
        self.progress = None

    async def attempt(self, stopping: asyncio.Event) -> float | None:
        assert self.progress is not None
        self.final = await self._work(self.progress)
        self._finished(self.final)
        return None

    # --- for subclasses ------------------------------------------------------------------------------

    async def _close(self) -> None:
        """Release what the subclass holds (a feed client)."""

    async def _stored(self) -> bytes | None:
        """The progress value stored under this run's key, if any."""
        key = self.state_key
        return (await read_state(self.settings.kafka, self.topics.state, lambda found: found == key)).get(key)

    async def _commit(self, chunk: ProcessedChunk, progress: ProgressT) -> ProgressT:
        """Publish the chunk and store `progress` in one transaction; only then is it the run's progress."""
        headers: Sequence[tuple[str, bytes]] = [(HEADER_REPLAY, progress.run.encode()), *self._headers]
        await self.writer.commit_with_state(chunk, self.state_key, self._encode(progress), headers=headers)
        self.progress = progress
        self.loop.progressed()
        return progress

    @abstractmethod
    async def _load(self) -> ProgressT:
        """The stored progress to resume, or a fresh one (committed with `_commit` before it is returned)."""

    @abstractmethod
    async def _work(self, progress: ProgressT) -> ProgressT:
        """Publish from `progress` to the end, committing as it goes; return the final progress."""

    @abstractmethod
    def _encode(self, progress: ProgressT) -> bytes:
        """The state-topic value of `progress`."""

    def _started(self, progress: ProgressT) -> None:
        """Told once the progress is loaded (after each rebuild too)."""

    def _finished(self, progress: ProgressT) -> None:
        """Told once the work is done."""
