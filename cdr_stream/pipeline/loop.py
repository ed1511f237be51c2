"""The loop shared by the commands that publish records again: `backfill` (a past window asked from the
feed) and `dlq replay` (dead letters read with today's rules).

A run has its own transactional id, so it neither fences the feed's connector nor is fenced by it, and
its own key in the state topic. Each transaction carries a chunk of records, marked with the cdr-replay
header (the run's id), together with the run's progress: whatever a crash cuts short is aborted, and the
same command afterwards resumes from the last commit. Kafka errors rebuild the producer and re-read the
progress (Kafka holds the truth); a retryable feed error is retried with the feed's backoff.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from aiokafka.errors import KafkaError

from cdr_stream.config import FeedSettings, Settings, TopicSettings
from cdr_stream.kafka.state import StateReadError, read_state
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import Headers, TransactionalWriter, WriteError, WriterFenced
from cdr_stream.ops.logs import describe_error
from cdr_stream.pipeline.backoff import backoff_delay
from cdr_stream.records.processor import HEADER_REPLAY, ProcessedChunk
from cdr_stream.sources.http import FeedError


class RunError(Exception):
    """A run cannot go on for a reason a retry cannot fix; the message says why and what to do."""


class RunProgress(Protocol):
    """What every run's progress has: the run's id, the value of the cdr-replay header it publishes with."""

    @property
    def run(self) -> str: ...


ProgressT = TypeVar("ProgressT", bound=RunProgress)


class RetryObserver(Protocol):
    def retrying(self, reason: str, message: str, retry_in: float, consecutive: int) -> None: ...


class MarkedRun(ABC, Generic[ProgressT]):
    """One run: `await run.run()` loads (or starts) the progress, does the work, returns the final progress.

    Subclasses say how progress is loaded (`_load`), how the work goes (`_work`, committing with
    `_commit`) and how progress is stored (`_encode`).
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
    ) -> None:
        self.settings = settings
        self.feed = feed
        self.topics = topics
        self.state_key = state_key
        self.writer = TransactionalWriter(settings.kafka, topics, feed.name, id_suffix=id_suffix)
        self.progress: ProgressT | None = None
        self._retry_observer = observer
        self._headers = tuple(headers)
        self._failures = 0

    async def run(self) -> ProgressT:
        try:
            return await self._run()
        finally:
            await self.writer.stop()
            await self._close()

    async def _close(self) -> None:
        """Release what the subclass holds (a feed client)."""

    async def _run(self) -> ProgressT:
        await prepare_topics(self.settings.kafka, self.topics)
        while True:
            try:
                if self.progress is None:
                    await self.writer.start()  # fences a stale process of this run before its progress is read
                    self.progress = await self._load()
                    self._started(self.progress)
                final = await self._work(self.progress)
                self._finished(final)
                return final
            except WriterFenced:
                raise self.error(
                    f"another process took over this {self.kind} (transactional id {self.writer.transactional_id!r})"
                ) from None
            except FeedError as exc:
                if not exc.retryable:
                    raise self.error(str(exc)) from None
                await self._retry(exc.reason, str(exc), exc.retry_after)
            except (WriteError, StateReadError, KafkaError, OSError) as exc:
                # Whatever Kafka holds now is the truth: rebuild the producer and re-read the progress.
                await self.writer.stop()
                self.progress = None
                await self._retry("kafka", describe_error(exc), None)

    async def _retry(self, reason: str, message: str, retry_after: float | None) -> None:
        self._failures += 1
        wait = backoff_delay(
            self._failures,
            initial=self.feed.backoff_initial_seconds,
            cap=self.feed.backoff_max_seconds,
            retry_after=retry_after,
        )
        self._retry_observer.retrying(reason, message, wait, self._failures)
        await asyncio.sleep(wait)

    async def _stored(self) -> bytes | None:
        """The progress value stored under this run's key, if any."""
        key = self.state_key
        return (await read_state(self.settings.kafka, self.topics.state, lambda found: found == key)).get(key)

    async def _commit(self, chunk: ProcessedChunk, progress: ProgressT) -> ProgressT:
        """Publish the chunk and store `progress` in one transaction; only then is it the run's progress."""
        headers: Sequence[tuple[str, bytes]] = [(HEADER_REPLAY, progress.run.encode()), *self._headers]
        await self.writer.commit_with_state(chunk, self.state_key, self._encode(progress), headers=headers)
        self.progress = progress
        self._failures = 0
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
