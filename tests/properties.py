"""The properties of the parser, validator and normalizer, checked on any input; shared by the property
tests and `dev/fuzz.py`.

Each `check_*` function raises AssertionError when a property fails (any other exception from
cdr_stream is a crash) and adds what it saw to a `Tally`. The expectations are computed here, from the
contract (README, schemas), not by calling the code under test again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import cycle
from typing import Any, Final, TypeVar

import jsonschema_rs
import orjson

from cdr_stream.answers.parse import json_row_chunks
from cdr_stream.errors import AnswerFormatError, DeadLetterRule
from cdr_stream.records.event import Event
from cdr_stream.records.fields import DESCRIPTIVE_FIELDS, FEED_TO_EVENT
from cdr_stream.records.processor import (
    EVENT_SCHEMA_FILE,
    FUTURE_TOLERANCE,
    ProcessedChunk,
    RecordProcessor,
    load_schema,
)
from tests.strategies import BOM, INT64_MAX, INT64_MIN, Body, UtcText

T = TypeVar("T")
FEED: Final = "fuzz"
RULES: Final = frozenset(
    {
        DeadLetterRule.NOT_AN_OBJECT,
        DeadLetterRule.MISSING_FIELD,
        DeadLetterRule.INVALID_FIELD,
        DeadLetterRule.INVALID_VALUE,
    }
)
ANSWER_REASONS: Final = frozenset({"not_json_array", "invalid_json"})
DEAD_LETTER_KEYS: Final = frozenset({"feed", "id", "rule", "field", "reason", "raw", "rejected_at"})
#: Below orjson's dumps limit (254): such a value can be compared and re-encoded as is.
COMPARABLE_DEPTH: Final = 200
_MONEY: Final = re.compile(r"-?[0-9]+(\.[0-9]*[1-9])?")
# The forms the README lists for the feed's values; spaces are those PHP's trim() removes, less NUL and \v.
_SPACE: Final = "[ \t\r\n]*"
_WHOLE_TEXT: Final = re.compile(f"{_SPACE}([-+]?[0-9]{{1,18}})(?:\\.0+)?{_SPACE}")
_NUMBER_TEXT: Final = re.compile(f"{_SPACE}([-+]?[0-9]{{1,15}}(?:\\.[0-9]{{1,12}})?){_SPACE}")
_UNITS_TEXT: Final = re.compile(f"{_SPACE}([-+]?[0-9]{{1,18}}(?:\\.[0-9]{{1,12}})?){_SPACE}")
_OFFSET_TEXT: Final = re.compile(f"{_SPACE}([-+]?)([0-9]{{1,2}})(?:(\\.[0-9]{{1,12}})|:([0-9]{{2}}))?{_SPACE}")
_DATE_TEXT: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME_TEXT: Final = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
_UTC_TEXT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?"
)
_ZERO_DATES: Final = ("0000-00-00", "0000-00-00 00:00:00")
# An integer literal that may not fit in 64 bits, and nesting past orjson's loads limit: the two known
# places where the parse paths part ways (see docs/reliability.md).
_LONG_INTEGER: Final = re.compile(rb"[0-9]{19,}")
_ORJSON_MAX_DEPTH: Final = 1024

EVENT_VALIDATOR: Final = jsonschema_rs.validator_for(load_schema(EVENT_SCHEMA_FILE))
#: The processor's "now": every valid row's call is before it, the far-future near misses after it.
NOW: Final = datetime(2100, 1, 1, tzinfo=UTC)
PROCESSOR: Final = RecordProcessor(FEED, clock=lambda: NOW)


@dataclass
class Tally:
    """What the checks saw: inputs by kind, events, dead letters by rule, dropped rows, refused answers."""

    inputs: Counter[str] = field(default_factory=Counter)
    events: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    refused_answers: Counter[str] = field(default_factory=Counter)

    def add_chunk(self, chunk: ProcessedChunk) -> None:
        self.events += len(chunk.events)
        self.dead_letters.update(letter.rule for letter in chunk.dead_letters)
        self.dropped += chunk.dropped_seen + chunk.dropped_duplicate

    def total_inputs(self) -> int:
        return sum(self.inputs.values())


#: What the property tests of this pytest run saw (tests/conftest.py prints it at the end).
SUITE_TALLY: Final = Tally()


# --- the contract, restated ----------------------------------------------------------------------


def depth(value: Any) -> int:
    """How many containers deep `value` is, without recursion (values may be nested 1,000 levels)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def expected_id(row: Any) -> int | None:
    """The README's usable ID: a positive whole number, as a JSON integer or a string of 1-18 ASCII digits
    (spaces, tabs and line ends around them allowed)."""
    if not isinstance(row, dict):
        return None
    value = row.get("ID")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str) and (found := re.fullmatch(f"{_SPACE}([0-9]{{1,18}}){_SPACE}", value)):
        return int(found[1]) or None
    return None


def expected_text(value: Any) -> str | None:
    """How a text field is published: stripped, empty as null, a number as its digits."""
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def amount_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value).strip()


class Unreadable(Exception):
    """A descriptive value the README says cannot be read: the event has null and the raw value."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and re.fullmatch(_SPACE, value) is not None)


def _in_int64(number: int) -> int:
    if not INT64_MIN <= number <= INT64_MAX:
        raise Unreadable
    return number


def read_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str) and not _is_number(value):
        raise Unreadable
    return expected_text(value)


def read_direction(value: Any) -> str | None:
    text = read_text(value)
    return text.lower() if text else None


def read_whole(value: Any) -> int | None:
    """Seconds, NetworkSeconds, ConnectSeconds: a whole number, also written "60.0"."""
    if _blank(value):
        return None
    if isinstance(value, str) and (found := _WHOLE_TEXT.fullmatch(value)):
        return _in_int64(int(found[1]))
    if _is_number(value) and float(value).is_integer():
        return _in_int64(int(value))
    raise Unreadable


def read_units(value: Any) -> int | float | None:
    """FreeUnitsUsed: a number, whole ones as integers."""
    if _blank(value):
        return None
    if isinstance(value, str) and (found := _UNITS_TEXT.fullmatch(value)):
        value = Decimal(found[1])
    elif not _is_number(value):
        raise Unreadable
    if isinstance(value, int) or value == int(value):
        return _in_int64(int(value))
    return float(value)


def read_offset(value: Any) -> int | float | None:
    """UTCOffset: hours, also "+13", "13:00", "+12:45"."""
    if _blank(value):
        return None
    if isinstance(value, str) and (found := _OFFSET_TEXT.fullmatch(value)):
        sign, hours, fraction, minutes = found.groups()
        if minutes is None:
            hours_read = float(sign + hours + (fraction or ""))
        elif int(minutes) < 60:
            hours_read = (int(hours) * 60 + int(minutes)) / 60 * (-1 if sign == "-" else 1)
        else:
            raise Unreadable
    elif _is_number(value):
        hours_read = float(value)
    else:
        raise Unreadable
    if not -24 < hours_read < 24:
        raise Unreadable
    return hours_read


def read_date(value: Any) -> str | None:
    """BillDate, Date: YYYY-MM-DD; empty, or MySQL's zero date, is null."""
    if value in (None, "", *_ZERO_DATES):
        return None
    if isinstance(value, str) and (found := _DATE_TEXT.fullmatch(value)):
        try:
            return date(int(found[1]), int(found[2]), int(found[3])).isoformat()
        except ValueError:
            pass
    raise Unreadable


def read_time(value: Any) -> str | None:
    """Time: HH:MM:SS or HH:MM, published as HH:MM:SS."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and (found := _TIME_TEXT.fullmatch(value)):
        try:
            return time(int(found[1]), int(found[2]), int(found[3] or 0)).isoformat()
        except ValueError:
            pass
    raise Unreadable


#: How the README says each descriptive field is read.
READERS: Final[dict[str, Callable[[Any], Any]]] = {name: read_text for name in DESCRIPTIVE_FIELDS} | {
    "Direction": read_direction,
    "BillDate": read_date,
    "Date": read_date,
    "Time": read_time,
    "UTCOffset": read_offset,
    "Seconds": read_whole,
    "NetworkSeconds": read_whole,
    "ConnectSeconds": read_whole,
    "FreeUnitsUsed": read_units,
}


def deciding_fields_valid(row: Any) -> bool:
    """Whether the five deciding fields are what the README allows: then the row must be published."""
    if expected_id(row) is None:
        return False
    account = row.get("AccountCode")
    # A number must be whole: JSON Schema's integer, which a float with no fraction (1.0) also is.
    if not (isinstance(account, str) and account.strip()) and not (_is_number(account) and float(account).is_integer()):
        return False
    for name in ("Charge", "ChargeExcl"):
        amount = row.get(name)
        if not _is_number(amount) and not (isinstance(amount, str) and _NUMBER_TEXT.fullmatch(amount)):
            return False
    utc = row.get("UTCDateTime")
    if not isinstance(utc, str) or not _UTC_TEXT.fullmatch(utc):
        return False
    try:
        moment = datetime.fromisoformat(utc[:-1] + "Z" if utc.endswith("z") else utc)
    except ValueError:
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) <= NOW + FUTURE_TOLERANCE


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (floored), as Kafka timestamps count."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_MS


_ONE_MS: Final = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def _moment(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


# --- rows ------------------------------------------------------------------------------------------


def check_chunk(rows: Sequence[Any], floor: int, tally: Tally) -> ProcessedChunk:
    """Every row is accounted for once; every outcome is well-formed; IDs and keys are kept."""
    tally.inputs["rows"] += len(rows)
    chunk = PROCESSOR.process_chunk(rows, floor)
    tally.add_chunk(chunk)
    ids = [expected_id(row) for row in rows]
    fresh = [row_id for row_id in ids if row_id is not None and row_id > floor]
    distinct = sorted(set(fresh))

    assert chunk.dropped_seen == sum(1 for row_id in ids if row_id is not None and row_id <= floor)
    assert chunk.dropped_duplicate == len(fresh) - len(distinct)
    assert len(chunk.events) + len(chunk.dead_letters) + chunk.dropped_seen + chunk.dropped_duplicate == len(rows)
    assert chunk.max_id == (distinct[-1] if distinct else None)

    published = [event.id for event in chunk.events]
    keyed_letters = [letter.id for letter in chunk.dead_letters if letter.id is not None]
    assert published == sorted(published) and keyed_letters == sorted(keyed_letters), "not in ID order"
    assert sorted(published + keyed_letters) == distinct, "an ID is lost or comes out twice"
    assert sum(1 for letter in chunk.dead_letters if letter.id is None) == ids.count(None)

    # A repeated ID: the first row with it is the one that counts.
    first_row = {}
    for row_id, row in zip(ids, rows, strict=True):
        if row_id is not None:
            first_row.setdefault(row_id, row)
    # Only the five deciding fields decide: a row whose five are valid is published, whatever the others say.
    for row_id, row in first_row.items():
        if row_id > floor:
            assert (row_id in published) == deciding_fields_valid(row), (
                f"ID {row_id}: published {row_id in published}, deciding fields valid {deciding_fields_valid(row)}"
            )
    for event in chunk.events:
        check_event(event, first_row[event.id])
    unkeyed = iter(row for row_id, row in zip(ids, rows, strict=True) if row_id is None)
    for letter in chunk.dead_letters:
        check_dead_letter(letter.value, letter.key, letter.rule, first_row[letter.id] if letter.id else next(unkeyed))
    return chunk


def check_event(event: Event, row: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(event.value)
    errors = [error.message for error in EVENT_VALIDATOR.iter_errors(value)]
    assert not errors, f"the event breaks its schema: {errors}"
    assert value["id"] == event.id == expected_id(row)
    assert value["feed"] == FEED
    assert value["account_code"] == expected_text(row["AccountCode"])
    assert event.key == value["account_code"].encode()
    assert event.timestamp_ms == _ms(_moment(value["utc_datetime"])), "Kafka timestamp differs from utc_datetime"
    assert _moment(value["utc_datetime"]) <= NOW + FUTURE_TOLERANCE, "a call from the future was published"
    for name in ("Charge", "ChargeExcl"):
        assert Decimal(value[FEED_TO_EVENT[name]]) == Decimal(amount_text(row[name])), f"{name} changed its value"
    # A descriptive value is read as the README says, or published as null with its raw value reported.
    assert value.get("unreadable") != {}, "an empty unreadable object"
    unreadable = value.get("unreadable", {})
    expected_unreadable = set()
    for name in DESCRIPTIVE_FIELDS:
        sent = row.get(name)
        published = value[FEED_TO_EVENT[name]]
        try:
            expected = READERS[name](sent)
        except Unreadable:
            expected_unreadable.add(name)
            assert published is None, f"{name}: unreadable {sent!r} published as {published!r}"
            if depth(sent) < COMPARABLE_DEPTH:
                assert unreadable[name] == sent, f"{name}: raw {sent!r} reported as {unreadable[name]!r}"
        else:
            assert published == expected, f"{name}: {sent!r} -> {published!r}, not {expected!r}"
            if isinstance(expected, int | float) and expected == int(expected):
                assert isinstance(published, int), f"{name}: the whole number {published!r} is not an integer"
    assert value["free_units_used"] is None or isinstance(value["free_units_used"], int | float)
    extra = {}
    for name, sent in row.items():
        if name not in FEED_TO_EVENT:
            try:
                extra[name] = expected_text(sent)
            except RecursionError:  # a column nested ~1000 levels deep has no text
                extra[name] = None
                expected_unreadable.add(name)
    assert value.get("extra", {}) == extra
    assert set(unreadable) == expected_unreadable, f"unreadable {set(unreadable)}, expected {expected_unreadable}"
    return value


def check_dead_letter(raw_value: bytes, key: bytes | None, rule: str, row: Any) -> None:
    value = orjson.loads(raw_value)
    assert set(value) == DEAD_LETTER_KEYS
    assert rule == value["rule"] and rule in RULES, f"rule {rule!r} is not in the closed set"
    assert isinstance(value["reason"], str) and value["reason"].strip(), "a dead letter without a reason"
    assert value["field"] is None or isinstance(value["field"], str)
    assert value["feed"] == FEED
    assert (rule == DeadLetterRule.NOT_AN_OBJECT) == (not isinstance(row, dict))
    if depth(row) < COMPARABLE_DEPTH:
        assert value["raw"] == row, "the dead letter does not carry the row as received"
    if isinstance(row, dict) and isinstance(row.get("AccountCode"), str | int):
        account = expected_text(row["AccountCode"])
        assert key == (account.encode() if account else None)


def check_valid_rows(rows: Sequence[dict[str, Any]], floor: int, tally: Tally) -> None:
    """Rows the contract says are valid: each distinct ID above the floor becomes an event."""
    chunk = check_chunk(rows, floor, tally)
    reasons = [orjson.loads(letter.value)["reason"] for letter in chunk.dead_letters]
    assert not reasons, f"valid rows were dead-lettered: {reasons}"


def check_valid_row_fields(row: dict[str, Any], utc: UtcText, tally: Tally) -> None:
    """One valid row: the event carries what the row said, in the contract's forms."""
    tally.inputs["rows"] += 1
    row = {**row, "ID": 1, "UTCDateTime": utc.text}
    chunk = PROCESSOR.process_chunk([row], 0)
    tally.add_chunk(chunk)
    reasons = [orjson.loads(letter.value)["reason"] for letter in chunk.dead_letters]
    assert not reasons, f"a valid row was dead-lettered: {reasons}"
    value = check_event(chunk.events[0], row)
    assert _moment(value["utc_datetime"]) == utc.moment, f"{utc.text} read as {value['utc_datetime']}"
    assert "unreadable" not in value, f"a valid row has unreadable values: {value['unreadable']}"
    for name in ("Date", "BillDate"):
        assert value[FEED_TO_EVENT[name]] == (None if row[name] in _ZERO_DATES else row[name] or None)
    if row["Time"]:
        assert value["local_time"] == (row["Time"] + ":00")[:8]
    direction = expected_text(row["Direction"])
    assert value["direction"] == (direction.lower() if direction else None)


def check_strings_read_as_numbers(row: dict[str, Any], tally: Tally) -> None:
    """A valid row gives the same event whether its values are numbers or the strings a text answer (or a PHP
    feed) sends for them."""
    tally.inputs["rows"] += 1
    as_numbers = PROCESSOR.process_chunk([row], 0)
    as_strings = PROCESSOR.process_chunk([{name: plain_text(value) for name, value in row.items()}], 0)
    tally.add_chunk(as_numbers)
    tally.add_chunk(as_strings)
    assert [event.value for event in as_numbers.events] == [event.value for event in as_strings.events]
    assert len(as_numbers.events) == 1, "a valid row was dead-lettered"


def plain_text(value: Any) -> str | None:
    """A value as text: how csv, txt and pipe answers carry it (None stays empty)."""
    if value is None or isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def check_chunking(rows: Sequence[Any], floor: int, cuts: Sequence[int], tally: Tally) -> None:
    """Rows in ascending ID order give the same events and dead letters whatever the chunk size.

    Chunks chain their floor like the poller does (the next chunk starts above the highest ID so far).
    """
    ordered = sorted(rows, key=lambda row: expected_id(row) or 0)
    whole = check_chunk(ordered, floor, tally)
    events: list[Event] = []
    letters: list[tuple[Any, ...]] = []
    dropped = 0
    start, chunk_floor = 0, floor
    for cut in sorted({*cuts, len(ordered)}):
        piece = PROCESSOR.process_chunk(ordered[start:cut], chunk_floor)
        start, chunk_floor = cut, max(chunk_floor, piece.max_id or chunk_floor)
        events += piece.events
        letters += [_letter_fields(letter.value) for letter in piece.dead_letters]
        dropped += piece.dropped_seen + piece.dropped_duplicate
    assert events == whole.events
    assert sorted(letters, key=repr) == sorted(
        (_letter_fields(letter.value) for letter in whole.dead_letters), key=repr
    )
    assert dropped == whole.dropped_seen + whole.dropped_duplicate


def _letter_fields(value: bytes) -> tuple[Any, ...]:
    letter = orjson.loads(value)
    return (letter["id"], letter["rule"], letter["field"], letter["reason"], orjson.dumps(letter["raw"]))


# --- bodies ----------------------------------------------------------------------------------------


@dataclass
class Parsed:
    chunks: list[list[Any]]
    error: AnswerFormatError | None

    @property
    def rows(self) -> list[Any]:
        return [row for chunk in self.chunks for row in chunk]


def run_now(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never waits for anything to completion, without an event loop.

    The parser only awaits the reader, and `reader()` answers at once. A bare yield (ijson's C backend
    makes one between reads, as `asyncio.sleep(0)` does) only hands the turn over: go on. Waiting on a
    future would need a loop: that is a test bug.
    """
    steps = awaitable.__await__()
    while True:
        try:
            waited_on = steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        assert waited_on is None, f"the parser waited on {waited_on!r}, not on the reader"


def reader(data: bytes, pieces: Sequence[int]) -> Callable[[int], Awaitable[bytes]]:
    """Reads `data` in pieces of the given sizes, in turn: arbitrary read boundaries."""
    position, sizes = 0, cycle(pieces)

    async def read(size: int) -> bytes:
        nonlocal position
        piece = data[position : position + min(size, next(sizes))]
        position += len(piece)
        return piece

    return read


def parse(data: bytes, pieces: Sequence[int], *, chunk_rows: int, buffer_limit: int, prepare: bool = False) -> Parsed:
    chunks = json_row_chunks(reader(data, pieces), chunk_rows=chunk_rows, buffer_limit=buffer_limit, prepare=prepare)
    parsed = Parsed([], None)
    try:
        while True:
            parsed.chunks.append(run_now(anext(chunks)))
    except StopAsyncIteration:
        pass
    except AnswerFormatError as exc:
        parsed.error = exc
    return parsed


def check_body(body: Body, tally: Tally) -> None:
    """A body gives rows or an AnswerFormatError, never another exception; both parse paths agree; the
    chunk size changes nothing; every row then becomes one event or one dead letter."""
    tally.inputs["bodies"] += 1
    # Whole (orjson), then streamed (ijson) through a small buffer, both read in arbitrary pieces.
    whole = parse(body.data, body.pieces, chunk_rows=body.chunk_rows, buffer_limit=len(body.data) + 1)
    streamed = parse(body.data, body.pieces, chunk_rows=body.chunk_rows, buffer_limit=body.buffer_limit)
    for parsed in (whole, streamed):
        assert all(0 < len(chunk) <= body.chunk_rows for chunk in parsed.chunks)
        if parsed.error is not None:
            assert parsed.error.reason in ANSWER_REASONS
            assert str(parsed.error).strip()
    if whole.error is not None:
        tally.refused_answers[whole.error.reason] += 1
        assert not whole.chunks, "the whole-body path yielded rows of a bad answer"
    # Rows nested hundreds of levels deep are compared by count: == on them would recurse too deep.
    comparable = max((depth(row) for row in whole.rows + streamed.rows), default=0) < COMPARABLE_DEPTH
    if body.rows is not None:
        assert whole.error is None, f"an intact body was refused: {whole.error}"
        assert whole.rows == body.rows
    if _paths_may_differ(body.data):
        pass  # the known limits: only "no crash" and well-formed errors are checked
    elif whole.error is None:
        assert streamed.error is None, f"the streamed path refused what orjson read: {streamed.error}"
        assert len(streamed.rows) == len(whole.rows)
        assert not comparable or streamed.rows == whole.rows
    else:
        assert streamed.error is not None, "the streamed path accepted what orjson refused"
        assert streamed.error.reason == whole.error.reason
    if whole.error is None:
        rechunked = parse(body.data, (1 << 20,), chunk_rows=len(whole.rows) + 1, buffer_limit=len(body.data) + 1)
        assert [len(chunk) for chunk in rechunked.chunks] == ([len(whole.rows)] if whole.rows else [])
        assert not comparable or rechunked.rows == whole.rows
        check_chunk(whole.rows, 0, tally)
    check_prepared(body, whole)
    check_scanned(body, whole, streamed)


def check_scanned(body: Body, whole: Parsed, streamed: Parsed) -> None:
    """A body too large to read whole, read by the page reader a piece at a time (`prepare`): it refuses what
    ijson refuses, for the same reason, and its rows give the events and dead letters orjson's give."""
    scanned = parse(body.data, body.pieces, chunk_rows=body.chunk_rows, buffer_limit=body.buffer_limit, prepare=True)
    assert all(0 < len(chunk) <= body.chunk_rows for chunk in scanned.chunks)
    if _paths_may_differ(body.data):
        return
    if streamed.error is not None:
        assert scanned.error is not None, "the page reader accepted what ijson refused"
        assert scanned.error.reason == streamed.error.reason
        return
    assert scanned.error is None, f"the page reader refused what ijson read: {scanned.error}"
    if whole.error is None and max((depth(row) for row in whole.rows), default=0) < COMPARABLE_DEPTH:
        fast = RecordProcessor("hero-nz").process_chunk(scanned.rows, 0)
        checked = RecordProcessor("hero-nz", fast_path=False).process_chunk(whole.rows, 0)
        assert_same_outcome(fast, checked)


def check_prepared(body: Body, whole: Parsed) -> None:
    """The page reader (`prepare`) refuses what orjson refuses, with orjson's error, and its rows (prepared or
    not) give the events and dead letters orjson's rows give on the checked path."""
    prepared = parse(body.data, body.pieces, chunk_rows=body.chunk_rows, buffer_limit=len(body.data) + 1, prepare=True)
    if whole.error is not None:
        assert prepared.error is not None, "the page reader accepted what orjson refused"
        assert (prepared.error.reason, str(prepared.error)) == (whole.error.reason, str(whole.error))
        return
    assert prepared.error is None, f"the page reader refused what orjson read: {prepared.error}"
    assert [len(chunk) for chunk in prepared.chunks] == [len(chunk) for chunk in whole.chunks]
    if max((depth(row) for row in whole.rows), default=0) >= COMPARABLE_DEPTH:
        return
    # This host's clock: the page reader leaves a row ahead of it to the checked path.
    fast = RecordProcessor("hero-nz").process_chunk(prepared.rows, 0)
    checked = RecordProcessor("hero-nz", fast_path=False).process_chunk(whole.rows, 0)
    assert_same_outcome(fast, checked)


def assert_same_outcome(fast: ProcessedChunk, checked: ProcessedChunk) -> None:
    """Two paths gave the same events, dead letters and counts for the same rows."""
    assert fast.events == checked.events  # id, key, timestamp, value bytes and unreadable labels
    assert letters_of(fast) == letters_of(checked)
    assert (fast.max_id, fast.dropped_seen, fast.dropped_duplicate, fast.unreadable_fields) == (
        checked.max_id,
        checked.dropped_seen,
        checked.dropped_duplicate,
        checked.unreadable_fields,
    )


def letters_of(chunk: ProcessedChunk) -> list[tuple[Any, ...]]:
    """The dead letters without their `rejected_at` (the clock of the moment)."""
    found = []
    for letter in chunk.dead_letters:
        value = orjson.loads(letter.value)
        del value["rejected_at"]
        found.append((letter.id, letter.key, letter.rule, value))
    return found


def _paths_may_differ(data: bytes) -> bool:
    """Integers beyond 64 bits (orjson reads them, yajl refuses them) or nesting past orjson's limit."""
    if _LONG_INTEGER.search(data):
        return True
    level = deepest = 0
    for byte in data.removeprefix(BOM):
        if byte in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif byte in b"]}":
            level -= 1
    return deepest > _ORJSON_MAX_DEPTH - 24
