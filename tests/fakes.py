"""Fakes for the seams of the loops: a source, a writer over an in-memory "Kafka", an observer that records.

They follow the contracts of `sources.base.Source` and `kafka.base.Writer` (mypy checks the tests that
pass them), so the loops run here exactly as they run on a broker, only without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from cdr_stream.errors import FailureReason, FileAnomaly, WriterFenced
from cdr_stream.kafka.base import Headers
from cdr_stream.kafka.state import FilesPosition, StoredOffset
from cdr_stream.pipeline.observer import PageReport, PollObserver
from cdr_stream.records.processor import ProcessedChunk
from cdr_stream.sources.base import Batch
from tests.rows import feed_row


@dataclass
class FakeKafka:
    """What a broker would hold: the committed event IDs (in order, duplicates kept) and the stored state."""

    event_ids: list[int] = field(default_factory=list)
    dead_letter_ids: list[int | None] = field(default_factory=list)
    state: dict[str, bytes] = field(default_factory=dict)
    commits: int = 0
    #: The writer that holds the transactional id (the last one started); older ones are fenced.
    owner: object | None = None

    def stored(self, feed: str, initial: int = 0) -> StoredOffset:
        value = self.state.get(feed)
        return StoredOffset.decode(value) if value is not None else StoredOffset(feed, initial)


@dataclass
class Failure:
    """A scripted commit failure: raise `error`, after the transaction committed when `applied`."""

    error: Exception
    applied: bool = False


class FakeWriter:
    """A Writer over FakeKafka. `failures` fail the next commits, in order; `gate`, when set, holds each
    commit until it is opened (to stop the loop while a commit is in flight)."""

    def __init__(self, kafka: FakeKafka, feed: str = "f") -> None:
        self.kafka = kafka
        self.feed = feed
        self.transactional_id = f"cdr-stream-{feed}"
        self.failures: list[Failure] = []
        self.gate: asyncio.Event | None = None
        self.committing = asyncio.Event()
        self.starts = 0
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        self.starts += 1
        self._started = True
        self.kafka.owner = self

    async def stop(self) -> None:
        self._started = False

    async def commit(self, chunk: ProcessedChunk, last_id: int, *, files: FilesPosition | None = None) -> None:
        await self.commit_with_state(chunk, self.feed, StoredOffset.now(self.feed, last_id, files).encode())

    async def commit_with_state(
        self, chunk: ProcessedChunk, state_key: str, state_value: bytes, *, headers: Headers = ()
    ) -> None:
        assert self._started, "a commit on a writer that is not started"
        self.committing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.kafka.owner is not self:
            raise WriterFenced(f"another instance took over transactional id {self.transactional_id!r}")
        failure = self.failures.pop(0) if self.failures else None
        if failure is None or failure.applied:
            self.kafka.event_ids.extend(event.id for event in chunk.events)
            self.kafka.dead_letter_ids.extend(letter.id for letter in chunk.dead_letters)
            self.kafka.state[state_key] = state_value
            self.kafka.commits += 1
        if failure is not None:
            raise failure.error


class FakeSource:
    """A feed whose history is `ids` (rows made by feed_row), answered in batches of `chunk_rows`.

    `errors` fail the next polls, in order (None: that poll goes well); `gate`, when set, holds every
    poll before its first batch; `asked` lists the offset each poll started from.
    """

    def __init__(self, ids: list[int], chunk_rows: int = 10) -> None:
        self.rows: list[Any] = [feed_row(i) for i in ids]
        self.chunk_rows = chunk_rows
        self.errors: list[Exception | None] = []
        self.gate: asyncio.Event | None = None
        self.asked: list[int] = []
        self.closed = 0

    def grow(self, ids: list[int]) -> None:
        self.rows.extend(feed_row(i) for i in ids)

    async def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        self.asked.append(state.last_id)
        if self.gate is not None:
            await self.gate.wait()
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        rows = [row for row in self.rows if row["ID"] > state.last_id]
        for start in range(0, len(rows), self.chunk_rows):
            yield Batch(rows[start : start + self.chunk_rows])

    async def close(self) -> None:
        self.closed += 1


@dataclass
class Told:
    """One event an observer was told."""

    kind: str
    reason: FailureReason | FileAnomaly | None = None
    retry_in: float | None = None
    consecutive: int = 0
    page: PageReport | None = None


class RecordingObserver(PollObserver):
    """Keeps what it is told, in order; `on_page` runs after each page (to stop a loop between pages)."""

    def __init__(self) -> None:
        self.told: list[Told] = []
        self.on_page: list[asyncio.Event] = []

    def kinds(self) -> list[str]:
        return [told.kind for told in self.told]

    def failures(self) -> list[Told]:
        return [told for told in self.told if told.kind in ("poll_failed", "feed_failed")]

    def offset_loaded(self, feed: str, last_id: int) -> None:
        self.told.append(Told("offset_loaded"))

    def page_committed(self, feed: str, page: PageReport) -> None:
        self.told.append(Told("page_committed", page=page))
        for event in self.on_page:
            event.set()

    def poll_finished(self, feed: str, *, seconds: float, rows: int, advanced: bool) -> None:
        self.told.append(Told("poll_finished"))

    def poll_failed(self, feed: str, *, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.told.append(Told("poll_failed", reason, retry_in, consecutive))

    def feed_failed(
        self, feed: str, *, reason: FailureReason, message: str, retry_in: float | None, consecutive: int
    ) -> None:
        self.told.append(Told("feed_failed", reason, retry_in, consecutive))
