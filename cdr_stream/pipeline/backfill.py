"""Backfill: ask the feed for a past window hour by hour (the contract's `date` and `hour`) and publish its
rows again, marked as replayed, exactly once per run.

A run is one feed, one window and one destination topic. It has its own transactional id, so it neither
fences the feed's connector nor touches its offset, and its own key in the state topic. Its progress
(hours done, and the last ID committed within the hour in flight) is committed in the same transaction as
the rows, so the same command after a crash resumes exactly where the last commit left off (the loop is
replay.MarkedRun, shared with `dlq replay`).

Hours, not days: the page says nothing of how many rows one answer may hold, and a busy day can be far
more than one answer. An hour is asked again from its last committed ID until an answer adds nothing, so
no page size is assumed; an hour that repeats at a daylight-saving change comes back whole in one query.
"""

from __future__ import annotations

import logging
import re
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol

import orjson
from pydantic import ValidationError

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import FeedSettings, Settings, TopicSettings, format_validation_error
from cdr_stream.errors import BackfillError, ConfigError, FailureReason
from cdr_stream.kafka.state import utc_now_stamp
from cdr_stream.pipeline.runs import MarkedRun, RunKey
from cdr_stream.records.processor import ProcessedChunk, RecordProcessor
from cdr_stream.sources.http import FeedClient, FeedTransport, FeedWindow

log = logging.getLogger(__name__)

_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
# Local time runs from UTC-12 to UTC+14: a window is surely over, or surely not begun, only beyond these.
_LATEST_ZONE: Final = timedelta(hours=-12)
_EARLIEST_ZONE: Final = timedelta(hours=14)


def parse_day(text: str) -> date:
    """A YYYY-MM-DD date (the contract's `date`), with a message that says what is wrong."""
    if not _DATE.fullmatch(text):
        raise ValueError(f"{text!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date: {exc}") from None


def parse_hour(text: str) -> int:
    """An hour of the day, 0 to 23 (the contract's `hour`)."""
    if not text.isdigit() or not 0 <= int(text) <= 23:
        raise ValueError(f"{text!r} is not an hour from 0 to 23")
    return int(text)


@dataclass(frozen=True, slots=True)
class BackfillWindow:
    """Provider-local days `first`..`last` (inclusive), every hour of them, or only `hour` of one day."""

    first: date
    last: date
    hour: int | None = None

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"--to-date {self.last} is before --date {self.first}")
        if self.hour is not None and self.last != self.first:
            raise ValueError("--hour picks one hour of --date; it cannot be combined with a later --to-date")

    def hours(self) -> list[FeedWindow]:
        """The queries of the window, in order: one per hour."""
        if self.hour is not None:
            return [FeedWindow(self.first, self.hour)]
        days = (self.last - self.first).days + 1
        return [FeedWindow(self.first + timedelta(days=n), hour) for n in range(days) for hour in range(24)]

    @property
    def label(self) -> str:
        if self.hour is not None:
            return f"{self.first} hour {self.hour}"
        return str(self.first) if self.last == self.first else f"{self.first}..{self.last}"

    def _bounds(self) -> tuple[datetime, datetime]:
        """Start and end as naive provider-local times."""
        midnight = datetime.min.time()
        if self.hour is not None:
            start = datetime.combine(self.first, midnight) + timedelta(hours=self.hour)
            return start, start + timedelta(hours=1)
        return datetime.combine(self.first, midnight), datetime.combine(self.last + timedelta(days=1), midnight)

    def check_against(self, now: datetime) -> str | None:
        """Refuse a window not begun anywhere yet; return a warning when it may not be over yet."""
        start, end = self._bounds()
        utc = now.astimezone(UTC).replace(tzinfo=None)
        if start >= utc + _EARLIEST_ZONE:
            raise ValueError(f"the window {self.label} has not begun anywhere yet: the feed has no rows for it")
        if end > utc + _LATEST_ZONE:
            return (
                f"the window {self.label} may not be over yet in the provider's time zone: rows added to it "
                "after this run are not published by it"
            )
        return None


@dataclass(frozen=True, slots=True)
class RunIdentity(RunKey):
    """What makes two backfill commands the same run: the feed, the window and the destination topic."""

    key_prefix = "backfill"
    feed: str
    window: BackfillWindow
    topic: str

    def _identity(self) -> tuple[object, ...]:
        return (self.window.first, self.window.last, self.window.hour)

    @property
    def id_suffix(self) -> str:
        return f"backfill-{self.digest}"


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """A run's progress, as committed with its rows: hours `done`, and where hour `done` resumes."""

    run: str
    generation: int
    hours: int
    done: int
    #: The fromid of the next query within hour `done`: the last ID committed in it, or the start.
    last_id: int
    events: int = 0
    dead_letters: int = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.hours

    @property
    def rows(self) -> int:
        return self.events + self.dead_letters

    def committed(self, last_id: int, chunk: ProcessedChunk) -> BackfillProgress:
        return replace(
            self,
            last_id=last_id,
            events=self.events + len(chunk.events),
            dead_letters=self.dead_letters + len(chunk.dead_letters),
        )

    def hour_done(self, start_id: int) -> BackfillProgress:
        return replace(self, done=self.done + 1, last_id=start_id)

    def encode(self, identity: RunIdentity) -> bytes:
        window = identity.window
        return orjson.dumps(
            {
                "feed": identity.feed,
                "backfill": {"first": window.first, "last": window.last, "hour": window.hour},
                "topic": identity.topic,
                "run": self.run,
                "generation": self.generation,
                "hours": self.hours,
                "done": self.done,
                "last_id": self.last_id,
                "events": self.events,
                "dead_letters": self.dead_letters,
                "committed_at": utc_now_stamp(),
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> BackfillProgress:
        try:
            data: Any = orjson.loads(value)
            return cls(
                run=str(data["run"]),
                generation=int(data["generation"]),
                hours=int(data["hours"]),
                done=int(data["done"]),
                last_id=int(data["last_id"]),
                events=int(data.get("events", 0)),
                dead_letters=int(data.get("dead_letters", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"not a backfill progress record: {value[:100]!r}") from None


class BackfillObserver(Protocol):
    """Told how a run goes; `BackfillReport` (a terminal line, or log lines) implements it."""

    def started(self, identity: RunIdentity, progress: BackfillProgress) -> None: ...

    def committed(self, progress: BackfillProgress, hour: FeedWindow) -> None: ...

    def hour_done(self, progress: BackfillProgress, hour: FeedWindow) -> None: ...

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None: ...

    def finished(self, progress: BackfillProgress) -> None: ...


def replay_topics(topics: TopicSettings, topic: str | None) -> TopicSettings:
    """The run's topics: the configured ones, with the events going to `topic` when one is given."""
    if topic is None:
        return topics
    try:
        return TopicSettings.model_validate({**topics.model_dump(), "events": topic})
    except ValidationError as exc:
        problems = format_validation_error(exc).split("\n", 1)[1].strip()
        raise ConfigError(f"--topic {topic!r} cannot be used: {problems}") from None


class Backfill(MarkedRun[BackfillProgress]):
    """One run: `await Backfill(...).run()` publishes the window's rows and returns the final progress.

    Made inside the event loop (its feed client opens an HTTP session).
    """

    error = BackfillError
    kind = "backfill"

    def __init__(
        self,
        settings: Settings,
        feed: FeedSettings,
        window: BackfillWindow,
        observer: BackfillObserver,
        *,
        topics: TopicSettings | None = None,
        restart: bool = False,
        transport: FeedTransport | None = None,
    ) -> None:
        topics = topics or settings.topics  # see replay_topics
        self.identity = RunIdentity(feed.name, window, topics.events)
        super().__init__(
            settings,
            feed,
            topics,
            state_key=self.identity.state_key,
            id_suffix=self.identity.id_suffix,
            observer=observer,
        )
        self.observer = observer
        self.restart = restart
        self.client = FeedClient(feed, transport, TempSpace(settings.tmp_dir, settings.tmp_max_bytes))
        self.processor = RecordProcessor(feed.name)
        # Each hour is asked from the start: fromid=0, or 1 for a deployment configured to refuse 0.
        self.start_id = min(feed.initial_from_id, 1)
        self._hours = window.hours()

    async def _close(self) -> None:
        await self.client.close()

    def _started(self, progress: BackfillProgress) -> None:
        self.observer.started(self.identity, progress)

    def _finished(self, progress: BackfillProgress) -> None:
        self.observer.finished(progress)

    def _encode(self, progress: BackfillProgress) -> bytes:
        return progress.encode(self.identity)

    async def _load(self) -> BackfillProgress:
        """The stored progress of this run; a fresh one (committed at once) when there is none or on restart."""
        key = self.identity.state_key
        stored_value = await self._stored()
        stored = BackfillProgress.decode(stored_value) if stored_value is not None else None
        if stored is not None and stored.hours != len(self._hours):
            raise BackfillError(
                f"the progress stored under {key!r} is for {stored.hours} hours, not {len(self._hours)}"
            )
        if stored is not None and not self.restart:
            return stored
        generation = stored.generation + 1 if stored is not None else 1
        fresh = BackfillProgress(self.identity.run_id(generation), generation, len(self._hours), 0, self.start_id)
        await self._commit(ProcessedChunk(), fresh)
        self.restart = False  # from here on, a retry resumes the new run
        return fresh

    async def _work(self, progress: BackfillProgress) -> BackfillProgress:
        while not progress.finished:
            hour = self._hours[progress.done]
            while True:
                asked_from = progress.last_id
                chunks = self.client.ordered_chunks(
                    asked_from, chunk_rows=self.feed.max_rows_per_transaction, window=hour
                )
                async with aclosing(chunks):
                    async for ordered in chunks:
                        chunk = self.processor.process_chunk(ordered.rows, floor_id=progress.last_id)
                        chunk.dropped_seen += ordered.dropped_seen
                        chunk.dropped_duplicate += ordered.dropped_duplicate
                        last_id = max(progress.last_id, chunk.max_id or 0)
                        if last_id > progress.last_id or chunk.dead_letters:
                            progress = await self._commit(chunk, progress.committed(last_id, chunk))
                            self.observer.committed(progress, hour)
                if progress.last_id == asked_from:
                    break  # the hour gave nothing more: it is done
            progress = await self._commit(ProcessedChunk(), progress.hour_done(self.start_id))
            self.observer.hour_done(progress, hour)
        return progress
