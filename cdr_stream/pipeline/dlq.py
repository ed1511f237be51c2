"""A feed's dead letters: what the dead-letter topic holds (`cdr-stream dlq show`), and their replay with
today's rules (`cdr-stream dlq replay`).

A replay reads the feed's dead letters (read_committed) and puts each row through today's
`RecordProcessor.normalize`. A row that now passes is published to the events topic, marked with the
cdr-replay header (the run's id) and cdr-replay-source: dead-letter; a row that still fails stays where it
is, and is counted by the rule it fails today. It runs on replay.MarkedRun, as a backfill does: a
transaction per chunk with the run's progress in the state topic, resumable after kill -9.

Exactly once: before reading anything, a run takes the feed's replay transactional id (one per feed, so
two replays of a feed fence each other whatever their ranges), then reads the IDs the events topic
already holds for the feed; an ID found there is never published again. The connector never publishes an
ID at or below its offset, and every dead letter with an ID is at or below it, so a replay can run while
the feed's connector runs: it has a transactional id of its own and never touches the feed's offset.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson

from cdr_stream.config import FeedSettings, Settings, TopicSettings
from cdr_stream.errors import DlqReplayError, FailureReason
from cdr_stream.kafka.readback import committed_records
from cdr_stream.kafka.state import utc_now_stamp
from cdr_stream.ops.checker import IdSet
from cdr_stream.ops.secrets import SecretMask
from cdr_stream.pipeline.loop import RetryObserver
from cdr_stream.pipeline.runs import MarkedRun, RunKey
from cdr_stream.records.event import Event
from cdr_stream.records.processor import (
    FUTURE_TOLERANCE,
    HEADER_FEED,
    HEADER_REPLAY_SOURCE,
    REPLAY_SOURCE_DEAD_LETTER,
    ProcessedChunk,
    RecordProcessor,
)

log = logging.getLogger(__name__)

SAMPLES: Final = 5
_SAMPLE_CHARS: Final = 300
#: Why a dead letter cannot be replayed at all (a closed set: they are counted).
SKIP_NO_ID: Final = "no_id"
SKIP_TRUNCATED: Final = "truncated"
SKIP_NOT_AN_OBJECT: Final = "not_an_object"


# --- reading dead letters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as the dead-letter topic holds it (the value records.RecordProcessor writes)."""

    partition: int
    offset: int
    id: int | None
    rule: str
    field: str | None
    reason: str
    #: The rejected row (a JSON object for a row with a usable ID), or the start of its text when truncated.
    raw: Any
    truncated: bool
    rejected_at: str | None

    @property
    def skip_reason(self) -> str | None:
        """Why the row cannot be put through the rules again; None when it can."""
        if self.id is None:
            return SKIP_NO_ID
        if self.truncated:
            return SKIP_TRUNCATED
        if not isinstance(self.raw, dict):
            return SKIP_NOT_AN_OBJECT
        return None


def record_feed(record: Any) -> bytes | None:
    """The cdr-feed header of a record, if it has one."""
    return next((value for name, value in record.headers or () if name == HEADER_FEED), None)


def decode_dead_letter(record: Any, feed: str) -> StoredDeadLetter | None:
    """The dead letter in `record` when it is one of `feed`'s, else None; ValueError when it is the feed's
    (by its header) but cannot be read."""
    header = record_feed(record)
    if header is not None and header != feed.encode():
        return None
    try:
        value: Any = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("rule"), str):
        if header is not None:
            raise ValueError(f"offset {record.offset} of partition {record.partition}: not a dead letter")
        return None
    if value.get("feed") != feed:
        return None
    record_id = value.get("id")
    usable = isinstance(record_id, int) and not isinstance(record_id, bool) and record_id > 0
    return StoredDeadLetter(
        partition=record.partition,
        offset=record.offset,
        id=record_id if usable else None,
        rule=value["rule"],
        field=value.get("field") if isinstance(value.get("field"), str) else None,
        reason=str(value.get("reason", "")),
        raw=value.get("raw"),
        truncated=bool(value.get("raw_truncated")),
        rejected_at=value.get("rejected_at") if isinstance(value.get("rejected_at"), str) else None,
    )


# --- dlq show --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeadLetterSummary:
    """What a feed's dead letters are: counts by rule and field, the oldest and newest, a few samples."""

    feed: str
    total: int = 0
    by_rule: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    without_id: int = 0
    unreadable: int = 0
    lowest_id: int | None = None
    highest_id: int | None = None
    oldest: StoredDeadLetter | None = None
    newest: StoredDeadLetter | None = None
    #: The first dead letter of each rule, up to SAMPLES of them.
    samples: list[StoredDeadLetter] = field(default_factory=list)

    def add(self, letter: StoredDeadLetter) -> None:
        self.total += 1
        self.by_rule[(letter.rule, letter.field)] += 1
        if letter.id is None:
            self.without_id += 1
        else:
            self.lowest_id = letter.id if self.lowest_id is None else min(self.lowest_id, letter.id)
            self.highest_id = letter.id if self.highest_id is None else max(self.highest_id, letter.id)
        # RFC 3339 UTC stamps of one writer compare as text; read order breaks ties.
        stamp = letter.rejected_at or ""
        if self.oldest is None or stamp < (self.oldest.rejected_at or ""):
            self.oldest = letter
        if self.newest is None or stamp >= (self.newest.rejected_at or ""):
            self.newest = letter
        if len(self.samples) < SAMPLES and all(sample.rule != letter.rule for sample in self.samples):
            self.samples.append(letter)

    def render(self, secrets: Sequence[str] = ()) -> str:
        lines = [
            f"feed {self.feed}: {self.total} dead letter(s) ({self.without_id} without an ID), "
            f"IDs {_or_dash(self.lowest_id)} to {_or_dash(self.highest_id)}"
        ]
        if self.unreadable:
            lines.append(f"{self.unreadable} record(s) of the feed could not be read as dead letters")
        if not self.total:
            return "\n".join(lines)
        lines.append(f"{'rule':<16} {'field':<20} {'count':>10}")
        for (rule, name), count in sorted(self.by_rule.items(), key=lambda item: (-item[1], item[0][0])):
            lines.append(f"{rule:<16} {name or '-':<20} {count:>10}")
        for label, letter in (("oldest", self.oldest), ("newest", self.newest)):
            if letter is not None:
                lines.append(f"{label}: ID {_or_dash(letter.id)}, rejected at {letter.rejected_at or '-'}")
        mask = SecretMask(secrets)
        for letter in self.samples:
            raw = letter.raw if isinstance(letter.raw, str) else orjson.dumps(letter.raw).decode()
            shown = mask(raw)  # masked whole, then cut: a cut could leave part of a secret
            if len(shown) > _SAMPLE_CHARS:
                shown = shown[: _SAMPLE_CHARS - 3] + "..."
            lines.append(
                f"sample {letter.rule} (ID {_or_dash(letter.id)}, partition {letter.partition} offset "
                f"{letter.offset}): {mask(letter.reason)}\n  {shown}"
            )
        return "\n".join(lines)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


async def summarize_dead_letters(settings: Settings, feed: str) -> DeadLetterSummary:
    summary = DeadLetterSummary(feed)
    async for records in committed_records(settings.kafka, [settings.topics.dead_letter]):
        for record in records:
            try:
                letter = decode_dead_letter(record, feed)
            except ValueError:
                summary.unreadable += 1
                continue
            if letter is not None:
                summary.add(letter)
    return summary


# --- dlq replay: what to replay --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """The dead letters a replay takes: of one rule (or all), with IDs in [from_id, to_id] (or any)."""

    rule: str | None = None
    from_id: int | None = None
    to_id: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("--from-id", self.from_id), ("--to-id", self.to_id)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive ID, not {value}")
        if self.from_id is not None and self.to_id is not None and self.to_id < self.from_id:
            raise ValueError(f"--to-id {self.to_id} is below --from-id {self.from_id}")

    @property
    def ranged(self) -> bool:
        return self.from_id is not None or self.to_id is not None

    def covers(self, letter: StoredDeadLetter) -> bool:
        if self.rule is not None and letter.rule != self.rule:
            return False
        if letter.id is None:
            return not self.ranged  # a dead letter without an ID is in no range
        return (self.from_id is None or letter.id >= self.from_id) and (self.to_id is None or letter.id <= self.to_id)

    @property
    def label(self) -> str:
        rule = f"rule {self.rule}" if self.rule else "every rule"
        ids = f"IDs {_or_dash(self.from_id)} to {_or_dash(self.to_id)}" if self.ranged else "every ID"
        return f"{rule}, {ids}"


@dataclass(frozen=True, slots=True)
class ReplayIdentity(RunKey):
    """What makes two replay commands the same run: the feed, the selection and the events topic."""

    key_prefix = "dlq-replay"
    run_prefix = "dlq-"
    feed: str
    selection: ReplaySelection
    topic: str

    def _identity(self) -> tuple[object, ...]:
        return (self.selection.rule, self.selection.from_id, self.selection.to_id)


#: One per feed, whatever the selection: two replays of a feed fence each other, never publish side by side.
REPLAY_ID_SUFFIX: Final = "dlq-replay"


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """A run's progress, as committed with its events: dead letters with an ID up to `last_id` are done."""

    run: str
    generation: int
    last_id: int = 0
    finished: bool = False
    replayed: int = 0
    already_published: int = 0
    #: Dead letters that cannot be put through the rules, by why (SKIP_*).
    skipped: Mapping[str, int] = field(default_factory=dict)
    #: Rows that fail today's rules too, by the rule they fail.
    still_failing: Mapping[str, int] = field(default_factory=dict)

    def add(self, outcome: ChunkOutcome, last_id: int) -> ReplayProgress:
        return replace(
            self,
            last_id=max(self.last_id, last_id),
            replayed=self.replayed + outcome.replayed,
            already_published=self.already_published + outcome.already_published,
            skipped=_sum(self.skipped, outcome.skipped),
            still_failing=_sum(self.still_failing, outcome.still_failing),
        )

    def encode(self, identity: ReplayIdentity) -> bytes:
        selection = identity.selection
        return orjson.dumps(
            {
                "feed": identity.feed,
                "dlq_replay": {"rule": selection.rule, "from_id": selection.from_id, "to_id": selection.to_id},
                "topic": identity.topic,
                "run": self.run,
                "generation": self.generation,
                "last_id": self.last_id,
                "finished": self.finished,
                "replayed": self.replayed,
                "already_published": self.already_published,
                "skipped": dict(self.skipped),
                # Plain strings: orjson takes no subclass of str (a DeadLetterRule) as a key.
                "still_failing": {str(rule): count for rule, count in self.still_failing.items()},
                "committed_at": utc_now_stamp(),
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> ReplayProgress:
        try:
            data: Any = orjson.loads(value)
            return cls(
                run=str(data["run"]),
                generation=int(data["generation"]),
                last_id=int(data["last_id"]),
                finished=bool(data["finished"]),
                replayed=int(data["replayed"]),
                already_published=int(data["already_published"]),
                skipped={str(key): int(count) for key, count in data["skipped"].items()},
                still_failing={str(key): int(count) for key, count in data["still_failing"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"not a dead-letter replay progress record: {value[:100]!r}") from None

    def summary(self) -> str:
        failing = sum(self.still_failing.values())
        by_rule = ", ".join(f"{rule} {count}" for rule, count in sorted(self.still_failing.items()))
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
        return (
            f"replayed {self.replayed}, already published {self.already_published}, "
            f"still failing {failing}{f' ({by_rule})' if by_rule else ''}, "
            f"skipped {skipped}{f' ({why})' if why else ''}"
        )


def _sum(counts: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    total = dict(counts)
    for key, count in more.items():
        total[key] = total.get(key, 0) + count
    return total


@dataclass(slots=True)
class ChunkOutcome:
    """What one chunk of dead letters came to: the events to publish and the counts."""

    chunk: ProcessedChunk = field(default_factory=ProcessedChunk)
    replayed: int = 0
    already_published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    still_failing: Counter[str] = field(default_factory=Counter)


def latest_per_id(letters: Iterable[StoredDeadLetter]) -> list[StoredDeadLetter]:
    """One dead letter per ID (the last one read: a row dead-lettered twice is one row), in ID order."""
    by_id: dict[int, StoredDeadLetter] = {}
    for letter in letters:
        if letter.id is not None:
            by_id[letter.id] = letter
    return [by_id[record_id] for record_id in sorted(by_id)]


def replay_chunk(
    letters: Sequence[StoredDeadLetter], processor: RecordProcessor, published: IdSet, latest: datetime
) -> ChunkOutcome:
    """Put dead letters (in ID order) through today's rules; IDs in `published` are left alone, and the
    IDs this chunk publishes are added to it."""
    out = ChunkOutcome()
    for letter in letters:
        skip = letter.skip_reason
        if skip is not None:
            out.skipped[skip] += 1
            continue
        assert letter.id is not None  # skip_reason says so
        if letter.id in published:
            out.already_published += 1
            continue
        outcome = processor.normalize(letter.id, letter.raw, latest)
        if isinstance(outcome, Event):
            out.chunk.events.append(outcome)
            published.add(letter.id)
            out.replayed += 1
        else:
            out.still_failing[outcome.rule.value] += 1  # a plain str: the progress is JSON (orjson keys)
    return out


def chunks_of(items: Sequence[StoredDeadLetter], size: int) -> Iterator[Sequence[StoredDeadLetter]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- dlq replay: the run ---------------------------------------------------------------------------------


class ReplayObserver(RetryObserver, Protocol):
    """Told how a replay goes; `ReplayLog` (log lines) and the replay metrics implement it."""

    def started(self, identity: ReplayIdentity, progress: ReplayProgress, candidates: int) -> None: ...

    def committed(self, progress: ReplayProgress, outcome: ChunkOutcome) -> None: ...

    def finished(self, progress: ReplayProgress) -> None: ...


class ReplayObservers:
    """Several ReplayObservers told the same."""

    def __init__(self, *observers: ReplayObserver) -> None:
        self._observers = observers

    def started(self, identity: ReplayIdentity, progress: ReplayProgress, candidates: int) -> None:
        for observer in self._observers:
            observer.started(identity, progress, candidates)

    def committed(self, progress: ReplayProgress, outcome: ChunkOutcome) -> None:
        for observer in self._observers:
            observer.committed(progress, outcome)

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        for observer in self._observers:
            observer.retrying(reason, message, retry_in, consecutive)

    def finished(self, progress: ReplayProgress) -> None:
        for observer in self._observers:
            observer.finished(progress)


class ReplayLog:
    """A ReplayObserver writing log lines: one at the start, one per commit (DEBUG), one at the end."""

    def started(self, identity: ReplayIdentity, progress: ReplayProgress, candidates: int) -> None:
        verb = "resuming" if progress.last_id else "starting"
        log.info(
            "feed %s: %s dead-letter replay %s (%s): %d dead letter(s) with an ID to go",
            identity.feed,
            verb,
            progress.run,
            identity.selection.label,
            candidates,
            extra={"feed": identity.feed, "run": progress.run, "last_id": progress.last_id},
        )

    def committed(self, progress: ReplayProgress, outcome: ChunkOutcome) -> None:
        log.debug("dead-letter replay %s: up to ID %d: %s", progress.run, progress.last_id, progress.summary())

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        log.warning("dead-letter replay: %s (%s); retry %d in %.1f s", message, reason, consecutive, retry_in)

    def finished(self, progress: ReplayProgress) -> None:
        log.info("dead-letter replay %s done: %s", progress.run, progress.summary())


class DlqReplay(MarkedRun[ReplayProgress]):
    """One replay run: `await DlqReplay(...).run()` returns the final progress (its counts)."""

    error = DlqReplayError
    kind = "dead-letter replay"

    def __init__(
        self,
        settings: Settings,
        feed: FeedSettings,
        selection: ReplaySelection,
        observer: ReplayObserver,
        *,
        chunk_size: int | None = None,
        topics: TopicSettings | None = None,
    ) -> None:
        topics = topics or settings.topics
        self.identity = ReplayIdentity(feed.name, selection, topics.events)
        super().__init__(
            settings,
            feed,
            topics,
            state_key=self.identity.state_key,
            id_suffix=REPLAY_ID_SUFFIX,
            observer=observer,
            headers=[(HEADER_REPLAY_SOURCE, REPLAY_SOURCE_DEAD_LETTER)],
        )
        self.selection = selection
        self.observer = observer
        self.chunk_size = chunk_size or feed.max_rows_per_transaction
        if self.chunk_size < 1:
            raise ValueError(f"the chunk size must be at least 1, not {self.chunk_size}")
        self.processor = RecordProcessor(feed.name)

    def _encode(self, progress: ReplayProgress) -> bytes:
        return progress.encode(self.identity)

    async def _load(self) -> ReplayProgress:
        """The stored progress of an unfinished run; otherwise a new run (committed at once)."""
        stored_value = await self._stored()
        stored = ReplayProgress.decode(stored_value) if stored_value is not None else None
        if stored is not None and not stored.finished:
            return stored
        generation = stored.generation + 1 if stored is not None else 1
        return await self._commit(ProcessedChunk(), ReplayProgress(self.identity.run_id(generation), generation))

    async def _work(self, progress: ReplayProgress) -> ReplayProgress:
        # Read after the writer started (fencing any other replay of the feed): what it committed is here.
        published = await self._published_ids()
        selected, without_id = await self._selected(progress.last_id)
        self.observer.started(self.identity, progress, len(selected))
        for letters in chunks_of(selected, self.chunk_size):
            latest = datetime.now(UTC) + FUTURE_TOLERANCE
            outcome = replay_chunk(letters, self.processor, published, latest)
            last_id = letters[-1].id
            assert last_id is not None
            progress = await self._commit(outcome.chunk, progress.add(outcome, last_id))
            self.observer.committed(progress, outcome)
        # Dead letters without an ID have no place in the ID order: counted once, when the run ends.
        tail = ChunkOutcome(skipped=Counter({SKIP_NO_ID: without_id} if without_id else {}))
        progress = await self._commit(ProcessedChunk(), replace(progress.add(tail, 0), finished=True))
        self.observer.committed(progress, tail)
        return progress

    def _finished(self, progress: ReplayProgress) -> None:
        self.observer.finished(progress)

    async def _published_ids(self) -> IdSet:
        """The IDs the events topic holds for the feed (live, backfilled or replayed)."""
        feed = self.feed.name
        header = feed.encode()
        ids = IdSet()
        async for records in committed_records(self.settings.kafka, [self.topics.events]):
            for record in records:
                found = record_feed(record)
                if found is not None and found != header:
                    continue
                try:
                    value: Any = orjson.loads(record.value) if record.value is not None else None
                except orjson.JSONDecodeError:
                    continue
                if isinstance(value, dict) and value.get("feed") == feed:
                    record_id = value.get("id")
                    if isinstance(record_id, int) and not isinstance(record_id, bool) and record_id >= 0:
                        ids.add(record_id)
        return ids

    async def _selected(self, after_id: int) -> tuple[list[StoredDeadLetter], int]:
        """The selected dead letters with an ID above `after_id`, one per ID in ID order, and the number of
        selected ones without an ID."""
        kept: list[StoredDeadLetter] = []
        without_id = 0
        async for records in committed_records(self.settings.kafka, [self.topics.dead_letter]):
            for record in records:
                try:
                    letter = decode_dead_letter(record, self.feed.name)
                except ValueError:
                    log.warning("dead-letter replay: an unreadable record of feed %s is left alone", self.feed.name)
                    continue
                if letter is None or not self.selection.covers(letter):
                    continue
                if letter.id is None:
                    without_id += 1
                elif letter.id > after_id:
                    kept.append(letter)
        return latest_per_id(kept), without_id
