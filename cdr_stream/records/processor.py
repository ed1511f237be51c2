"""Record logic: validate a feed row against the row schema and normalize it into an event.

Only the five deciding fields (ID, AccountCode, UTCDateTime, Charge, ChargeExcl) can make a row a dead
letter. A descriptive field whose value cannot be read is published as null, and the event names it with
its raw value under `unreadable`. Everything here is pure (no I/O) so it is cheap to test and to fuzz.
The hot path is `RecordProcessor.process_chunk`, called once per chunk of rows: a row that matches the
whole row schema (nearly every row) costs one schema check, and only the others are looked at field by
field.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import orjson

from cdr_stream.errors import DeadLetterRule
from cdr_stream.records.event import EVENT_SCHEMA_VERSION, MAX_EVENT_BYTES, Event, PreparedRow, dumps
from cdr_stream.records.fastpath import FastNormalizer, latest_micros
from cdr_stream.records.fields import DECIDING_FIELDS, DESCRIPTIVE_FIELDS, FEED_FIELDS, FEED_TO_EVENT
from cdr_stream.records.values import (
    INT64_MAX,
    INT64_MIN,
    SPACE,
    Converter,
    date_text,
    decimal_text,
    offset_hours,
    read_integer,
    read_lower_text,
    read_number,
    read_text,
    rfc3339,
    time_text,
    utc_moment_and_text,
)

ROW_SCHEMA_FILE: Final = "feed-row.schema.json"
EVENT_SCHEMA_FILE: Final = f"cdr-event.v{EVENT_SCHEMA_VERSION}.schema.json"
_MAX_RAW_DEPTH: Final = 100
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
#: How far ahead of this host's clock a call may be. No call ends in the future; this leaves room for a
#: provider clock that runs fast and stays well under what Kafka 4 accepts by default (1 hour ahead,
#: log.message.timestamp.after.max.ms). A record beyond that fails its whole transaction, at every retry.
FUTURE_TOLERANCE: Final = timedelta(minutes=15)

HEADER_SCHEMA_VERSION: Final = "cdr-schema-version"
HEADER_FEED: Final = "cdr-feed"
HEADER_DLQ_RULE: Final = "cdr-dlq-rule"
#: Marks a record that `cdr-stream backfill` or `cdr-stream dlq replay` published; its value is the run's id.
HEADER_REPLAY: Final = "cdr-replay"
#: Beside cdr-replay on an event `cdr-stream dlq replay` made of a dead letter, with the value below.
HEADER_REPLAY_SOURCE: Final = "cdr-replay-source"
REPLAY_SOURCE_DEAD_LETTER: Final = b"dead-letter"

#: A dead letter carries at most this much of the raw row (as JSON text), so it always fits too.
MAX_RAW_BYTES: Final = 64 * 1024
_MAX_KEY_BYTES: Final = 1024

#: What the `unreadable` metric counts an extra column (one beyond the 26 known fields) under.
UNREADABLE_EXTRA: Final = "extra"
#: The label values of unreadable values: the 21 descriptive fields, and extra columns.
UNREADABLE_LABELS: Final = (*DESCRIPTIVE_FIELDS, UNREADABLE_EXTRA)
# What a converter raises for a value it cannot read; RecursionError: the text of a column nested ~1000 deep.
_UNREADABLE_ERRORS: Final = (ValueError, TypeError, OverflowError, RecursionError)


def _schema_dir() -> Path:
    # Installed wheels carry the schemas inside the package; a source checkout has them at the top.
    packaged = resources.files("cdr_stream") / "_schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((_schema_dir() / name).read_text(encoding="utf-8"))
    return schema


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a row cannot be published: `rule` is from a closed set, `reason` is for people."""

    rule: DeadLetterRule
    field: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class MalformedRow:
    """A row its answer format could not split into named fields (a text row with more or fewer values than
    the header has columns). Its columns may be shifted, so its ID is not trusted: it is dead-lettered
    without moving the offset."""

    values: list[str]
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int | None
    key: bytes | None
    value: bytes
    rule: DeadLetterRule


@dataclass(slots=True)
class ProcessedChunk:
    """The outcome of one chunk of rows, in ID order."""

    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Highest usable ID in the chunk above the floor (published or dead-lettered), else None.
    max_id: int | None = None
    #: Rows whose ID was at or below the stored offset (already delivered).
    dropped_seen: int = 0
    #: Rows that repeated an ID already in this chunk.
    dropped_duplicate: int = 0
    #: Values published as null because they could not be read, by field (UNREADABLE_LABELS).
    unreadable_fields: Counter[str] = field(default_factory=Counter)


#: What a row's check finds when every field matches its rule.
ALL_READABLE: Final[tuple[str, ...]] = ()
_DECIDING: Final = frozenset(DECIDING_FIELDS)


class RowValidator:
    """The feed-row schema, compiled once; explains a failure with the field and the rule."""

    def __init__(self) -> None:
        self._schema = load_schema(ROW_SCHEMA_FILE)
        self._validator = jsonschema_rs.validator_for(self._schema)

    def check(self, row: dict[str, Any]) -> Rejection | tuple[str, ...]:
        """Why the row cannot be published (a deciding field breaks its rule); else the descriptive
        fields whose value breaks theirs, in feed order (ALL_READABLE for nearly every row)."""
        if self._validator.is_valid(row):
            return ALL_READABLE
        try:
            errors = list(self._validator.iter_errors(row))
        except ValueError:
            # It reports on nothing nested 255 levels or more ("Recursion limit reached"). Cut the deep
            # parts to text: any field that held them stays invalid, any extra column stays valid.
            errors = list(self._validator.iter_errors(_encodable(row)))
        odd = set()
        for error in errors:
            path = list(error.instance_path)
            if not path or path[0] in _DECIDING:  # [] is the row itself: a required field is missing
                return self._explain(error)
            odd.add(path[0])
        return tuple(name for name in FEED_FIELDS if name in odd)

    def _explain(self, error: Any) -> Rejection:
        path = list(error.instance_path)
        schema_path = [str(p) for p in error.schema_path]
        if schema_path and schema_path[-1] == "required":
            missing = str(error.kind.property)
            return Rejection(DeadLetterRule.MISSING_FIELD, missing, f"{missing}: required field is missing")
        name = str(path[0]) if path else None
        expected = self._expected(schema_path)
        shown = _short(error.instance)
        return Rejection(DeadLetterRule.INVALID_FIELD, name, f"{name}: {shown} is not {expected}")

    def _expected(self, schema_path: list[str]) -> str:
        # Name the rule by the $defs entry it failed, with that entry's description.
        if "$defs" in schema_path:
            name = schema_path[schema_path.index("$defs") + 1]
            description = self._schema["$defs"].get(name, {}).get("description")
            return f"{name} ({description})" if description else name
        return "/".join(schema_path)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError: see _encodable
        text = orjson.dumps(_encodable(value), default=str).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _encodable(value: Any, depth: int = 0) -> Any:
    """`value` with what orjson cannot encode replaced by text: containers nested deeper than
    _MAX_RAW_DEPTH levels (orjson stops at 254; a row parsed from JSON may nest up to 1024) and
    integers beyond 64 bits. Only for dead letters and reasons, so that a row that cannot be
    published can still be set aside."""
    if isinstance(value, dict | list):
        if depth >= _MAX_RAW_DEPTH:
            return f"(nested deeper than {_MAX_RAW_DEPTH} levels)"
        if isinstance(value, list):
            return [_encodable(item, depth + 1) for item in value]
        return {str(key): _encodable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


# --- normalization ---------------------------------------------------------------------------------

# Descriptive fields that need more than "text or None"; a value one cannot read is published as null.
_CONVERTERS: Final[dict[str, Converter]] = {
    "Direction": read_lower_text,
    "BillDate": date_text,
    "Date": date_text,
    "Time": time_text,
    "UTCOffset": offset_hours,
}
# Counts: nearly every value is a JSON int, published as it is; the others go through the converter.
_COUNT_FIELDS: Final[tuple[tuple[str, str, Converter], ...]] = (
    ("Seconds", "seconds", read_integer),
    ("NetworkSeconds", "network_seconds", read_integer),
    ("ConnectSeconds", "connect_seconds", read_integer),
    ("FreeUnitsUsed", "free_units_used", read_number),
)
_CONVERTED_FIELDS: Final = tuple((name, FEED_TO_EVENT[name], conv) for name, conv in _CONVERTERS.items())
_MONEY_FIELDS: Final = (("Charge", "charge"), ("ChargeExcl", "charge_excl"))
# AccountCode is text; ID comes from usable_id(); UTCDateTime gives the timestamp too.
_TEXT_FIELDS: Final = tuple(
    (name, event_name)
    for name, event_name in FEED_TO_EVENT.items()
    if name not in _CONVERTERS
    and name not in {count[0] for count in _COUNT_FIELDS}
    and name not in dict(_MONEY_FIELDS)
    and name not in ("ID", "UTCDateTime")
)
_KNOWN_FIELDS: Final = frozenset(FEED_TO_EVENT)
_first: Final = itemgetter(0)  # the ID of an (ID, row) pair
#: No call is too late (`normalize` without `latest`), in microseconds from the epoch.
_NO_LATEST: Final = 2**63
_FIELD_ORDER: Final = {name: index for index, name in enumerate(FEED_FIELDS)}
# Copying a template keeps the published keys in contract order whatever order they are filled in.
_EVENT_TEMPLATE: Final[dict[str, Any]] = dict.fromkeys(
    ("schema_version", "feed", *(FEED_TO_EVENT[name] for name in FEED_TO_EVENT))
)


def usable_id(row: Any) -> int | None:
    """The row's ID if it is a positive whole number (as number or digits), else None."""
    if row.__class__ is PreparedRow:
        return row[0]
    if not isinstance(row, dict):
        return None
    value = row.get("ID")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str):
        if not value.isdigit():
            value = value.strip(SPACE)  # a fixed-width export pads its numbers
        # isascii: str.isdigit() is also true for "²" and "١٢", which int() refuses or reads as a number.
        if value.isascii() and value.isdigit() and len(value) <= 18:
            number = int(value)
            return number if number > 0 else None
    return None


class RecordProcessor:
    """Turns chunks of raw rows from one feed into events and dead letters."""

    def __init__(
        self,
        feed: str,
        validator: RowValidator | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        fast_path: bool = True,
        native: bool = True,
    ) -> None:
        """`fast_path=False` reads every row on the checked path (what the fast path is compared with);
        `native=False` takes the fast path in Python even where the C extension is built."""
        self.feed = feed
        self._validator = validator or RowValidator()
        self._clock = clock or _utc_now
        fast = FastNormalizer(feed, use_native=native)
        self._fast_event = fast.event if fast_path else _no_event
        self._prepared_event = fast.prepared

    def process_chunk(self, rows: Iterable[Any], floor_id: int) -> ProcessedChunk:
        """Validate and normalize `rows`; IDs at or below `floor_id` are dropped as already seen.

        Rows with a usable ID come out in ID order, one per ID; rows without one are dead-lettered.
        """
        out = ProcessedChunk()
        latest = self._clock() + FUTURE_TOLERANCE
        latest_us = latest_micros(latest)
        keyed: list[tuple[int, Any]] = []
        for row in rows:
            row_id: int | None
            if row.__class__ is PreparedRow:
                row_id = row[0]
            else:
                row_id = row.get("ID") if row.__class__ is dict else None
                if row_id.__class__ is not int or row_id <= 0:  # a positive int is usable as it is
                    row_id = usable_id(row)
            if row_id is None:
                out.dead_letters.append(self._dead_letter(None, row, self._reject_unkeyed(row)))
            elif row_id <= floor_id:
                out.dropped_seen += 1
            else:
                keyed.append((row_id, row))
        keyed.sort(key=_first)  # stable, and near-free on the ascending order feeds send
        previous = floor_id
        events, fast_event, prepared_event = out.events, self._fast_event, self._prepared_event
        for row_id, row in keyed:
            if row_id == previous:
                out.dropped_duplicate += 1
                continue
            previous = row_id
            if row.__class__ is PreparedRow:  # read from its page already (cdr_stream.records.page)
                events.append(prepared_event(row))
                continue
            event = fast_event(row_id, row, latest_us) if row.__class__ is dict else None
            if event is not None:
                events.append(event)
                continue
            outcome = self._normalize_checked(row_id, row, latest)
            if isinstance(outcome, Event):
                events.append(outcome)
                if outcome.unreadable:
                    out.unreadable_fields.update(outcome.unreadable)
            else:
                out.dead_letters.append(self._dead_letter(row_id, row, outcome))
        if keyed:
            out.max_id = previous
        return out

    def normalize(self, row_id: int, row: dict[str, Any], latest: datetime | None = None) -> Event | Rejection:
        """The row's event, or why it cannot be one; a call after `latest` (a UTC moment) is refused."""
        latest_us = _NO_LATEST if latest is None else latest_micros(latest)
        event = self._fast_event(row_id, row, latest_us) if row.__class__ is dict else None
        return event if event is not None else self._normalize_checked(row_id, row, latest)

    def _normalize_checked(self, row_id: int, row: dict[str, Any], latest: datetime | None) -> Event | Rejection:
        """The checked path: the row schema decides, and explains a rejection or an unreadable field."""
        odd = self._validator.check(row)
        if isinstance(odd, Rejection):
            return odd
        # The fields whose value could not be read; None while there are none (nearly always).
        unreadable: list[str] | None = None
        sent = row
        if odd:  # descriptive fields that break their rule are read as empty
            unreadable = list(odd)
            row = {**row, **dict.fromkeys(odd)}
        event = _EVENT_TEMPLATE.copy()
        event["schema_version"] = EVENT_SCHEMA_VERSION
        event["feed"] = self.feed
        event["id"] = row_id
        get = row.get
        # Inline fast paths: nearly every text field arrives as a str, every count as an int.
        for feed_name, event_name in _TEXT_FIELDS:
            value = get(feed_name)
            event[event_name] = (value.strip() or None) if value.__class__ is str else read_text(value)
        if event["account_code"] is None:
            # The schema's \S and Python's strip() disagree on what is blank (\x1c, \x85, ...).
            return Rejection(
                DeadLetterRule.INVALID_VALUE,
                "AccountCode",
                f"AccountCode: {_short(get('AccountCode'))}: blank once stripped",
            )
        for feed_name, event_name, convert in _COUNT_FIELDS:
            value = get(feed_name)
            if value.__class__ is int and INT64_MIN <= value <= INT64_MAX:
                event[event_name] = value
                continue
            try:
                event[event_name] = convert(value)
            except _UNREADABLE_ERRORS:
                unreadable = _noted(unreadable, feed_name)
        for feed_name, event_name, convert in _CONVERTED_FIELDS:
            value = get(feed_name)
            try:
                event[event_name] = convert(value)
            except _UNREADABLE_ERRORS:
                unreadable = _noted(unreadable, feed_name)
        feed_name = ""
        try:
            for feed_name, event_name in _MONEY_FIELDS:
                event[event_name] = decimal_text(get(feed_name))
            feed_name = "UTCDateTime"
            moment, event["utc_datetime"] = utc_moment_and_text(row["UTCDateTime"])
            if latest is not None and moment > latest:
                raise ValueError(
                    f"{rfc3339(moment)} is more than {FUTURE_TOLERANCE.seconds // 60} minutes ahead of this "
                    "host's clock (Kafka refuses such a timestamp)"
                )
        except _UNREADABLE_ERRORS as exc:
            return Rejection(DeadLetterRule.INVALID_VALUE, feed_name, f"{feed_name}: {_short(get(feed_name))}: {exc}")
        if not row.keys() <= _KNOWN_FIELDS:
            extra = event["extra"] = {}
            for feed_name, value in row.items():
                if feed_name not in _KNOWN_FIELDS:
                    try:
                        extra[feed_name] = read_text(value)
                    except _UNREADABLE_ERRORS:
                        extra[feed_name] = None
                        unreadable = _noted(unreadable, feed_name)
        labels = ALL_READABLE
        if unreadable:
            # Each raw value as sent (what orjson cannot encode cut to text), in feed order.
            names = sorted(unreadable, key=lambda name: _FIELD_ORDER.get(name, len(_FIELD_ORDER)))
            event["unreadable"] = {name: _encodable(sent[name]) for name in names}
            labels = tuple(name if name in _KNOWN_FIELDS else UNREADABLE_EXTRA for name in names)
        key, value = event["account_code"].encode(), dumps(event)
        if len(key) + len(value) > MAX_EVENT_BYTES:
            return _too_large(row, len(key) + len(value))
        # Exact: a float timestamp can be 1 ms short.
        timestamp_ms = (moment - _EPOCH) // _MILLISECOND
        return Event(id=row_id, key=key, timestamp_ms=timestamp_ms, value=value, unreadable=labels)

    def _reject_unkeyed(self, row: Any) -> Rejection:
        if isinstance(row, MalformedRow):
            return Rejection(DeadLetterRule.MALFORMED_ROW, None, row.reason)
        if not isinstance(row, dict):
            return Rejection(DeadLetterRule.NOT_AN_OBJECT, None, f"row is not a JSON object: {_short(row)}")
        found = self._validator.check(row)
        if isinstance(found, Rejection) and found.field == "ID":
            return found
        return Rejection(
            DeadLetterRule.INVALID_FIELD, "ID", f"ID: {_short(row.get('ID'))} is not a positive whole number"
        )

    def _dead_letter(self, row_id: int | None, row: Any, rejection: Rejection) -> DeadLetter:
        code = row.get("AccountCode") if isinstance(row, dict) else None
        account = None if isinstance(code, dict | list) else read_text(code)
        key = account.encode() if account else None
        raw_row = row.values if isinstance(row, MalformedRow) else row
        try:
            raw = dumps(raw_row)
        except TypeError:  # orjson.JSONEncodeError: the raw row is too deep or its integers too big
            raw = dumps(_encodable(raw_row))
        value: dict[str, Any] = {
            "feed": self.feed,
            "id": row_id,
            "rule": rejection.rule,
            "field": rejection.field,
            "reason": rejection.reason,
            "raw": orjson.Fragment(raw),
            "rejected_at": rfc3339(datetime.now(UTC).replace(microsecond=0)),
        }
        if len(raw) > MAX_RAW_BYTES:
            # The start of the row's JSON text, so that the dead letter itself always fits in a batch.
            value["raw"] = raw[:MAX_RAW_BYTES].decode("utf-8", "ignore")
            value["raw_truncated"] = True
            value["raw_bytes"] = len(raw)
        return DeadLetter(
            id=row_id,
            key=key if key is None or len(key) <= _MAX_KEY_BYTES else None,
            value=dumps(value),
            rule=rejection.rule,
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _too_large(row: dict[str, Any], size: int) -> Rejection:
    sizes = {name: len(dumps(value)) for name, value in row.items()}
    largest = max(sizes, key=sizes.__getitem__)
    return Rejection(
        DeadLetterRule.TOO_LARGE,
        largest,
        f"the event would take {size} bytes, above the limit of {MAX_EVENT_BYTES}; "
        f"its largest field is {largest} ({sizes[largest]} bytes)",
    )


def _no_event(row_id: int, row: dict[str, Any], latest_us: int) -> Event | None:
    return None  # without the fast path, every row is read on the checked path


def _noted(unreadable: list[str] | None, name: str) -> list[str]:
    """`unreadable` (made on the first unreadable value) with `name` added."""
    if unreadable is None:
        return [name]
    unreadable.append(name)
    return unreadable
