"""Judge what a feed's connector committed: every ID exactly once, per-account order, and the stored offset.

The checker reads the events and dead-letter topics to their end as a read_committed consumer sees them
(an aborted transaction never counts), together with the state topic, and reports:

- IDs missing from an expectation (a set or a range), or, without one, holes in the ID sequence as
  "possible gaps" (a real feed may skip IDs, so those are reported, not judged);
- IDs seen more than once, across both topics;
- IDs out of order within an account: per topic, partition and key, each ID must be above the last;
- whether the state topic's last value for the feed equals the highest committed ID.

Records a backfill published (header cdr-replay) are left out: they repeat the live sequence on purpose.
Events `dlq replay` made of dead letters (cdr-replay with cdr-replay-source: dead-letter) count instead:
a dead-lettered ID replayed once is one ID, not a duplicate; replayed twice, or replayed although a live
event has it, it is a duplicate. They are not judged for order: they follow the live sequence by design.

It is what the fault tests judge by, and `cdr-stream verify` runs it against a live deployment. IDs are
kept in a bitmap (8 KiB per 65,536 IDs), so a check of millions of records stays small.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard

import orjson

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.errors import ExpectationError
from cdr_stream.kafka.readback import committed_records
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.records.processor import HEADER_FEED, HEADER_REPLAY, HEADER_REPLAY_SOURCE, REPLAY_SOURCE_DEAD_LETTER

_BLOCK_BITS: Final = 16
_BLOCK_IDS: Final = 1 << _BLOCK_BITS
_BLOCK_MASK: Final = _BLOCK_IDS - 1
_KEEP: Final = 1000  # problems kept in detail; beyond that only counted
_SHOWN: Final = 10  # examples per kind of problem in the summary
SETTLE_SECONDS: Final = 5.0  # at most, for the markers of a transaction committed just before the check


@dataclass(frozen=True, slots=True, order=True)
class IdRange:
    """IDs `first` to `last`, both included."""

    first: int
    last: int

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


class IdSet:
    """A set of non-negative IDs as a bitmap in blocks of 65,536: compact for dense feeds, fine for sparse ones."""

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._blocks: dict[int, bytearray] = {}
        self._count = 0
        for record_id in ids:
            self.add(record_id)

    def add(self, record_id: int) -> bool:
        """Add an ID; False if it was already there."""
        if record_id < 0:
            raise ValueError(f"IDs are never negative: {record_id}")
        block = self._blocks.get(record_id >> _BLOCK_BITS)
        if block is None:
            block = self._blocks[record_id >> _BLOCK_BITS] = bytearray(_BLOCK_IDS // 8)
        offset = record_id & _BLOCK_MASK
        bit = 1 << (offset & 7)
        if block[offset >> 3] & bit:
            return False
        block[offset >> 3] |= bit
        self._count += 1
        return True

    def __contains__(self, record_id: object) -> bool:
        if not isinstance(record_id, int) or record_id < 0:
            return False
        block = self._blocks.get(record_id >> _BLOCK_BITS)
        offset = record_id & _BLOCK_MASK
        return block is not None and bool(block[offset >> 3] & (1 << (offset & 7)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        """The IDs in ascending order."""
        for number in sorted(self._blocks):
            base = number << _BLOCK_BITS
            block = self._blocks[number]
            position = 0
            while (position := _next_set_byte(block, position)) >= 0:
                byte = block[position]
                for bit in range(8):
                    if byte >> bit & 1:
                        yield base + position * 8 + bit
                position += 1

    def runs(self) -> Iterator[IdRange]:
        """The IDs as maximal runs of consecutive IDs, ascending."""
        first = last = -2
        for record_id in self:
            if record_id != last + 1:
                if last >= 0:
                    yield IdRange(first, last)
                first = record_id
            last = record_id
        if last >= 0:
            yield IdRange(first, last)

    def count_within(self, first: int, last: int) -> int:
        return sum(1 for record_id in self if first <= record_id <= last)


_NON_ZERO: Final = re.compile(rb"[^\x00]")


def _next_set_byte(block: bytearray, start: int) -> int:
    found = _NON_ZERO.search(block, start)
    return found.start() if found else -1


def holes(present: Iterable[IdRange], first: int, last: int) -> Iterator[IdRange]:
    """The ranges of [first, last] that ascending runs `present` do not cover."""
    cursor = first
    for run in present:
        if run.last < cursor:
            continue
        if run.first > last:
            break
        if run.first > cursor:
            yield IdRange(cursor, run.first - 1)
        cursor = run.last + 1
    if cursor <= last:
        yield IdRange(cursor, last)


def as_ranges(ids: Iterable[int]) -> Iterator[IdRange]:
    """Ascending IDs grouped into runs of consecutive IDs."""
    first = last = None
    for record_id in ids:
        if last is not None and record_id == last + 1:
            last = record_id
            continue
        if first is not None and last is not None:
            yield IdRange(first, last)
        first = last = record_id
    if first is not None and last is not None:
        yield IdRange(first, last)


# --- expectations ---------------------------------------------------------------------------------------


def parse_range(text: str) -> IdRange:
    """`A-B` (both included) as an IdRange."""
    found = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not found:
        raise ExpectationError(f"{text!r} is not a range like 1-5000")
    first, last = int(found.group(1)), int(found.group(2))
    if first > last:
        raise ExpectationError(f"{text!r}: the first ID is above the last")
    return IdRange(first, last)


def read_id_file(path: Path) -> IdSet:
    """One ID per line; blank lines and lines starting with # are ignored."""
    ids = IdSet()
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if not text.isdigit():
                    raise ExpectationError(f"{path}:{number}: {text[:40]!r} is not an ID")
                ids.add(int(text))
    except OSError as exc:
        raise ExpectationError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    return ids


Expectation = IdRange | IdSet


# --- the result -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutOfOrder:
    """In `topic`/`partition`, account `account` has ID `after` committed after the higher ID `before`."""

    topic: str
    partition: int
    account: str
    before: int
    after: int

    def __str__(self) -> str:
        return f"account {self.account} ({self.topic}[{self.partition}]): {self.after} after {self.before}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    feed: str
    events: int
    dead_letters: int
    #: Dead letters whose row had no usable ID (they cannot be counted against an expectation).
    dead_letters_without_id: int
    distinct_ids: int
    highest_id: int | None
    #: The state topic's last value for the feed; None when nothing is stored.
    state_last_id: int | None
    #: Number of expected IDs; None when the check had no expectation.
    expected: int | None = None
    missing: tuple[IdRange, ...] = ()
    #: IDs seen that the expectation does not name (not a problem: a range may cover only part of a feed).
    unexpected: int = 0
    possible_gaps: tuple[IdRange, ...] = ()
    #: ID -> how many times it was seen, for IDs seen more than once (the first _KEEP of them).
    duplicates: dict[int, int] = field(default_factory=dict)
    duplicate_count: int = 0
    out_of_order: tuple[OutOfOrder, ...] = ()
    out_of_order_count: int = 0
    #: Records of the feed whose value is not a readable event or dead letter.
    unreadable: int = 0
    #: Records a backfill published again (header cdr-replay): not part of the live sequence, left out.
    replayed: int = 0
    #: Events `dlq replay` made of dead letters: each ID counted once with its dead letter.
    dead_letters_replayed: int = 0

    @property
    def missing_count(self) -> int:
        return sum(len(gap) for gap in self.missing)

    @property
    def state_ok(self) -> bool:
        return self.state_last_id == self.highest_id

    @property
    def problems(self) -> list[str]:
        """One line per kind of problem found; empty when the output is clean."""
        found: list[str] = []
        if self.missing:
            found.append(f"{self.missing_count} ID(s) missing: {_examples(self.missing)}")
        if self.duplicate_count:
            shown = [f"{record_id} x{times}" for record_id, times in list(self.duplicates.items())[:_SHOWN]]
            more = ", ..." if self.duplicate_count > _SHOWN else ""
            found.append(f"{self.duplicate_count} ID(s) seen more than once: {', '.join(shown)}{more}")
        if self.out_of_order_count:
            found.append(
                f"{self.out_of_order_count} ID(s) out of order within an account: {_examples(self.out_of_order)}"
            )
        if not self.state_ok:
            found.append(
                f"the stored offset is {_or_none(self.state_last_id)} but the highest committed ID is "
                f"{_or_none(self.highest_id)}"
            )
        if self.unreadable:
            found.append(f"{self.unreadable} record(s) of the feed could not be read")
        return found

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [
            f"feed {self.feed}: {self.events} events, {self.dead_letters} dead letters "
            f"({self.dead_letters_without_id} without an ID), {self.distinct_ids} distinct IDs, "
            f"highest {_or_none(self.highest_id)}, stored offset {_or_none(self.state_last_id)}"
        ]
        if self.replayed:
            lines.append(f"{self.replayed} replayed record(s) (header {HEADER_REPLAY}, from a backfill) left out")
        if self.dead_letters_replayed:
            lines.append(
                f"{self.dead_letters_replayed} event(s) replayed from dead letters (dlq replay), each counted "
                "once with its dead letter"
            )
        if self.expected is not None:
            lines.append(f"expected {self.expected} IDs; {self.unexpected} other ID(s) seen")
        else:
            gaps = sum(len(gap) for gap in self.possible_gaps)
            lines.append(
                "no expectation given; possible gaps (IDs the sequence skips; a feed may skip IDs): "
                + (f"{gaps} ID(s): {_examples(self.possible_gaps)}" if gaps else "none")
            )
        problems = self.problems
        lines.extend(f"PROBLEM: {problem}" for problem in problems)
        lines.append("result: " + ("clean" if not problems else f"{len(problems)} kind(s) of problem"))
        return "\n".join(lines)


def _or_none(value: int | None) -> str:
    return "none" if value is None else str(value)


def _examples(items: Iterable[object]) -> str:
    shown = []
    for number, item in enumerate(items):
        if number == _SHOWN:
            shown.append("...")
            break
        shown.append(str(item))
    return ", ".join(shown)


# --- the check ------------------------------------------------------------------------------------------


class Tally:
    """Folds committed records into the facts a CheckResult reports."""

    def __init__(self, feed: str, topics: TopicSettings) -> None:
        self.feed = feed
        self._feed_header = feed.encode()
        self.topics = topics
        self.seen = IdSet()
        self.events = 0
        self.dead_letters = 0
        self.without_id = 0
        self.unreadable = 0
        self.replayed = 0
        self.dead_letters_replayed = 0
        self.highest: int | None = None
        # Which topic an ID was seen in, to judge the events dlq replay made of dead letters.
        self.event_ids = IdSet()
        self.dead_letter_ids = IdSet()
        self.replayed_ids = IdSet()
        self._replays_settled = False
        self.duplicates: dict[int, int] = {}
        self.doubled = IdSet()
        self.out_of_order: list[OutOfOrder] = []
        self.out_of_order_count = 0
        self.state: StoredOffset | None = None
        self.state_unreadable = False
        self._last_of_account: dict[tuple[str, int, bytes], int] = {}

    def add(self, record: Any) -> None:
        if record.topic == self.topics.state:
            self._add_state(record)
            return
        headers = dict(record.headers or ())
        if HEADER_REPLAY in headers:
            if record.topic == self.topics.events and headers.get(HEADER_REPLAY_SOURCE) == REPLAY_SOURCE_DEAD_LETTER:
                self._add_replayed_dead_letter(record)
            else:
                self.replayed += 1
            return
        value = self._value_of_feed(record)
        if value is None:
            return
        record_id = value.get("id")
        if record.topic == self.topics.dead_letter:
            self.dead_letters += 1
            if record_id is None:
                self.without_id += 1
                return
        else:
            self.events += 1
        if not _is_id(record_id):
            self.unreadable += 1
            return
        self._count(record_id)
        (self.dead_letter_ids if record.topic == self.topics.dead_letter else self.event_ids).add(record_id)
        if record.key is not None:
            self._check_order(record, record_id)

    def _add_replayed_dead_letter(self, record: Any) -> None:
        value = self._value_of_feed(record)
        if value is None:
            return
        record_id = value.get("id")
        if not _is_id(record_id):
            self.unreadable += 1
            return
        self.dead_letters_replayed += 1
        if not self.replayed_ids.add(record_id):
            self._doubled(record_id)  # replayed twice

    def settle_replays(self) -> None:
        """Count each ID replayed from a dead letter once the topics are read: with its dead letter when
        that is still there; as a duplicate when a live event has it too; as an ID of its own otherwise."""
        if self._replays_settled:
            return
        self._replays_settled = True
        for record_id in self.replayed_ids:
            if record_id in self.event_ids:
                self._doubled(record_id)
            elif record_id not in self.dead_letter_ids:
                self._count(record_id)  # its dead letter is gone (retention)

    def _value_of_feed(self, record: Any) -> dict[str, Any] | None:
        header = next((value for name, value in record.headers or () if name == HEADER_FEED), None)
        if header is not None and header != self._feed_header:
            return None
        try:
            value = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            if header is not None:
                self.unreadable += 1
            return None
        return value if value.get("feed") == self.feed else None

    def _count(self, record_id: int) -> None:
        if not self.seen.add(record_id):
            self._doubled(record_id)
        if self.highest is None or record_id > self.highest:
            self.highest = record_id

    def _doubled(self, record_id: int) -> None:
        self.doubled.add(record_id)
        if record_id in self.duplicates or len(self.duplicates) < _KEEP:
            self.duplicates[record_id] = self.duplicates.get(record_id, 1) + 1

    def _check_order(self, record: Any, record_id: int) -> None:
        where = (record.topic, record.partition, record.key)
        before = self._last_of_account.get(where)
        if before is not None and record_id < before:
            self.out_of_order_count += 1
            if len(self.out_of_order) < _KEEP:
                account = record.key.decode("utf-8", "replace")
                self.out_of_order.append(OutOfOrder(record.topic, record.partition, account, before, record_id))
            return
        self._last_of_account[where] = record_id

    def _add_state(self, record: Any) -> None:
        if record.key != self._feed_header:
            return
        if record.value is None:
            self.state = None  # a tombstone
            return
        try:
            self.state = StoredOffset.decode(record.value)
        except (ValueError, orjson.JSONDecodeError):
            self.state_unreadable = True


def _is_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def judge(tally: Tally, expectation: Expectation | None) -> CheckResult:
    """The verdict on what was read, against an expectation (or none)."""
    tally.settle_replays()
    seen = tally.seen
    missing: tuple[IdRange, ...] = ()
    possible_gaps: tuple[IdRange, ...] = ()
    unexpected = 0
    expected: int | None = None
    if isinstance(expectation, IdRange):
        expected = len(expectation)
        missing = tuple(holes(seen.runs(), expectation.first, expectation.last))
        unexpected = len(seen) - seen.count_within(expectation.first, expectation.last)
    elif isinstance(expectation, IdSet):
        expected = len(expectation)
        missing = tuple(as_ranges(record_id for record_id in expectation if record_id not in seen))
        unexpected = len(seen) - (len(expectation) - sum(len(gap) for gap in missing))
    elif tally.highest is not None:
        lowest = next(iter(seen))
        possible_gaps = tuple(holes(seen.runs(), lowest, tally.highest))
    return CheckResult(
        feed=tally.feed,
        events=tally.events,
        dead_letters=tally.dead_letters,
        dead_letters_without_id=tally.without_id,
        distinct_ids=len(seen),
        highest_id=tally.highest,
        state_last_id=tally.state.last_id if tally.state else None,
        expected=expected,
        missing=missing,
        unexpected=unexpected,
        possible_gaps=possible_gaps,
        duplicates=dict(tally.duplicates),
        duplicate_count=len(tally.doubled),
        out_of_order=tuple(tally.out_of_order),
        out_of_order_count=tally.out_of_order_count,
        unreadable=tally.unreadable + tally.state_unreadable,
        replayed=tally.replayed,
        dead_letters_replayed=tally.dead_letters_replayed,
    )


async def check_feed(
    kafka: KafkaSettings,
    topics: TopicSettings,
    feed: str,
    expectation: Expectation | None = None,
    *,
    settle_seconds: float = SETTLE_SECONDS,
) -> CheckResult:
    """Read the feed's committed output to the end (as of the call) and judge it."""
    tally = Tally(feed, topics)
    # One read of all three topics: their end offsets are taken together, so a live connector's state
    # and events are compared at (nearly) the same moment. The settling keeps a transaction whose
    # markers are only partly written from showing its state without all of its events.
    topic_names = [topics.events, topics.dead_letter, topics.state]
    async for records in committed_records(kafka, topic_names, settle_seconds=settle_seconds):
        for record in records:
            tally.add(record)
    return judge(tally, expectation)
