"""The fast path of normalization: the common valid row, turned into its event without the schema check.

It takes only values whose form it knows to be valid (the row schema's rule for the field holds, and the
field's converter reads it) and gives up (None) on anything else, so that `RecordProcessor`'s checked path
explains the row: a rejection, an unreadable descriptive field, a PHP form it does not know. What it
publishes is byte for byte what the checked path publishes for the same row; a test compares the two.

Values that repeat from row to row (dates, UTC offsets, amounts, the hour of UTCDateTime) are read once
and remembered in small memos, emptied when they grow past `MEMO_LIMIT` entries so that any answer stays
within bounded memory.

Where the C extension `_native` is built (the default), it does this path's work: it reads the row and
writes the event's JSON itself, takes the same forms or fewer, and reads new values through the readers
and memos below. The Python path here is what runs without it (CDR_STREAM_PURE_PYTHON=1), and what a
test compares it with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from cdr_stream import extensions
from cdr_stream.records import values
from cdr_stream.records.event import EVENT_SCHEMA_VERSION, MAX_EVENT_BYTES, Event, PreparedRow, dumps
from cdr_stream.records.fields import FEED_FIELDS

#: The C extension, or None where it is not built or turned off.
native: Final = extensions.load("cdr_stream.records._native")
#: What makes a row's event on the fast path: the row's ID, the row, the latest acceptable call time (us).
EventMaker = Callable[[int, dict[str, Any], int], Event | None]

#: The most entries one memo holds before it is emptied (a feed sends a few dates and offsets a day).
MEMO_LIMIT: Final = 4096
_EPOCH_DAY: Final = date(1970, 1, 1)
_MICROSECOND: Final = timedelta(microseconds=1)
_ROW_FIELDS: Final = len(FEED_FIELDS)
# The row schema's rules for the forms taken here (ASCII [0-9], anchored like the schema's ^...$).
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_OPTIONAL_DATE: Final = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}|0000-00-00 00:00:00)?")
# Every "HH" and "MM:SS" of a time of day Python's time() accepts (hour below 24, minute and second below
# 60), with its seconds: a lookup both checks and reads the text.
_HOUR_SECONDS: Final = {f"{hour:02d}": hour * 3600 for hour in range(24)}
_MINUTE_SECONDS: Final = {
    f"{minute:02d}:{second:02d}": minute * 60 + second for minute in range(60) for second in range(60)
}
_OFFSET: Final = re.compile(r"[ \t\r\n]*([-+]?[0-9]{1,2}(\.[0-9]{1,12}|:[0-9]{2})?)?[ \t\r\n]*")
_AMOUNT: Final = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,12})?")
# "60.0" as PHP writes a whole float; within what both count rules (whole and units) allow.
_WHOLE_AS_FLOAT: Final = re.compile(r"[0-9]{1,18}\.0{1,12}")
_MAX_DIGITS: Final = 18  # the row schema's most digits of a count: within 64 bits
_INT64_MAX: Final = values.INT64_MAX
#: What a memo lookup gives for a value it has not read yet (None is a value: an empty date reads as null).
_MISS: Final = object()


class GiveUp(Exception):
    """A value the fast path does not take; the checked path reads the row."""


def _remember(memo: dict[Any, Any], value: Any, result: Any) -> Any:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[value] = result
    return result


class _ReadOnce:
    """One field's text values, each read once and remembered: a str the row schema's `rule` takes and
    `read` reads, or null. Keyed by str (and None) only: a str never equals a number, so a lookup of any
    other value misses."""

    def __init__(self, rule: re.Pattern[str], read: Callable[[str], Any]) -> None:
        self._rule = rule
        self._read = read
        self.known: dict[Any, Any] = {None: None}

    def __call__(self, value: Any) -> Any:
        found = self.known.get(value, self)
        if found is not self:
            return found
        if value.__class__ is not str or not self._rule.fullmatch(value):
            raise GiveUp
        try:
            return _remember(self.known, value, self._read(value))
        except ValueError:
            raise GiveUp from None


#: BillDate and Date, when the row schema takes them and they read as a date (or as empty).
_date_text: Final = _ReadOnce(_OPTIONAL_DATE, values.date_text)
_OFFSETS: Final = _ReadOnce(_OFFSET, values.offset_hours)
# Keyed by float and str (-0.0 and 0.0 are one key, with one text: "0").
_AMOUNT_TEXTS: dict[float | str, str] = {}
# "YYYY-MM-DD HH" (or with a T) -> seconds from the epoch to the start of that hour.
_HOUR_STARTS: dict[str, int] = {}


def _utc_seconds(value: Any) -> int:
    """UTCDateTime as "YYYY-MM-DD HH:MM:SS" (or with a T) in seconds from the epoch."""
    if value.__class__ is not str or len(value) != 19 or value[13] != ":":
        raise GiveUp
    hour = _HOUR_STARTS.get(value[:13])
    if hour is None:
        hour = _remember(_HOUR_STARTS, value[:13], _hour_start(value[:13]))
    return hour + _MINUTE_SECONDS[value[14:]]  # KeyError: not a time


def _hour_start(text: str) -> int:
    day, separator, hour = text[:10], text[10], text[11:]
    if separator not in (" ", "T") or not _DAY.fullmatch(day) or hour not in _HOUR_SECONDS:
        raise GiveUp
    try:
        return (date.fromisoformat(day) - _EPOCH_DAY).days * 86400 + _HOUR_SECONDS[hour]
    except ValueError:
        raise GiveUp from None


def _offset_hours(value: Any) -> int | float | None:
    if value.__class__ is int and -24 < value < 24:
        return value
    return _OFFSETS(value)  # type: ignore[no-any-return]


def _local_time(value: Any) -> str | None:
    if value.__class__ is str:
        if len(value) == 8 and value[2] == ":" and value[:2] in _HOUR_SECONDS and value[3:] in _MINUTE_SECONDS:
            return value  # HH:MM:SS: what time.isoformat() gives back
        if not value:
            return None
    elif value is None:
        return None
    raise GiveUp


def _text(value: Any) -> str | None:
    """A descriptive field that is not a str: null, or a number read as its text."""
    if value is None:
        return None
    if value.__class__ is int or value.__class__ is float:
        return str(value)
    raise GiveUp


def _count(value: Any) -> int | None:
    """Seconds, NetworkSeconds, ConnectSeconds or FreeUnitsUsed as an int, digits, or empty."""
    if value.__class__ is int and values.INT64_MIN <= value <= values.INT64_MAX:
        return value
    if value.__class__ is str:
        if value.isdigit() and value.isascii() and len(value) <= _MAX_DIGITS:
            return int(value)
        if not value:
            return None
        if _WHOLE_AS_FLOAT.fullmatch(value):
            return int(value.partition(".")[0])
    elif value.__class__ is float:
        if value.is_integer() and values.INT64_MIN <= value <= values.INT64_MAX:
            return int(value)  # 60.0: how PHP writes a whole float
    elif value is None:
        return None
    raise GiveUp


def _amount(value: Any) -> str:
    """Charge or ChargeExcl in canonical decimal text, as `values.decimal_text` writes it."""
    if value.__class__ is float or value.__class__ is str:
        # Only floats and strs are looked up: True would find 1.0's text, and a boolean is no amount.
        found = _AMOUNT_TEXTS.get(value)
        if found is not None:
            return found
        return _remember(_AMOUNT_TEXTS, value, _amount_text(value))  # type: ignore[no-any-return]
    if value.__class__ is int:
        return str(value)
    raise GiveUp


def _amount_text(value: float | str) -> str:
    if value.__class__ is float:
        text = repr(value)
        if "e" in text or "n" in text:  # an exponent, inf or nan: the checked path
            raise GiveUp
    elif value.__class__ is str:
        if not _AMOUNT.fullmatch(value):
            raise GiveUp
        text = value
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _account(value: Any) -> str:
    # ASCII: there, Python's whitespace includes the schema's (\s), so a non-blank stripped code matches \S.
    if value.__class__ is str and value.isascii():
        text: str = value.strip()
        if text:
            return text
    elif value.__class__ is int:
        return str(value)
    raise GiveUp


class FastNormalizer:
    """The fast path for one feed's rows: `event` is the C extension's where it is built, unless
    `use_native` is False."""

    def __init__(self, feed: str, *, use_native: bool = True) -> None:
        self._feed = feed
        self._prefix = b'{"schema_version":%d,"feed":%s,"id":' % (EVENT_SCHEMA_VERSION, dumps(feed))
        #: The row's event, if the fast path can make it; None if the checked path must read the row.
        self.event: EventMaker = self.python_event
        #: A prepared row's event (see `cdr_stream.records.page`).
        self.prepared: Callable[[PreparedRow], Event] = self.python_prepared
        if use_native and native is not None:
            normalizer = native.Normalizer(
                prefix=self._prefix,
                event_type=Event,
                dates=_date_text.known,
                read_date=_date_text,
                offsets=_OFFSETS.known,
                read_offset=_offset_hours,
                amounts=_AMOUNT_TEXTS,
                read_amount=_amount,
                read_count=_count,
                give_up=GiveUp,
                max_event_bytes=MAX_EVENT_BYTES,
            )
            self.event, self.prepared = normalizer.event, normalizer.prepared

    def python_prepared(self, row: PreparedRow) -> Event:
        """A prepared row's event in Python: the feed's prefix and the ID put in front of its tail."""
        value = b"%s%d%s" % (self._prefix, row[0], row[3])
        return tuple.__new__(Event, (row[0], row[1], row[2], value, ()))

    def python_event(self, row_id: int, row: dict[str, Any], latest_us: int) -> Event | None:
        """The fast path in Python: the row's event, or None. `latest_us`: the latest acceptable call time,
        in microseconds from the epoch."""
        if len(row) != _ROW_FIELDS or row_id > values.INT64_MAX:
            return None  # a missing or an extra column
        try:
            event = self._event_fields(row_id, row)
            utc = row["UTCDateTime"]
            seconds = _utc_seconds(utc)
        except (GiveUp, KeyError, TypeError):  # TypeError: a list or an object, which no memo can look up
            return None
        if seconds * 1_000_000 > latest_us:
            return None  # in the future: the checked path explains it
        event["utc_datetime"] = f"{utc[:10]}T{utc[11:]}Z"
        try:
            value = dumps(event)
        except TypeError:  # orjson cannot encode it (a lone surrogate): the checked path deals with it
            return None
        key: bytes = event["account_code"].encode()
        if len(key) + len(value) > MAX_EVENT_BYTES:
            return None
        # tuple.__new__ skips the named tuple's Python-level __new__, a tenth of the fast path's own time.
        return tuple.__new__(Event, (row_id, key, seconds * 1000, value, ()))

    def _event_fields(self, row_id: int, row: dict[str, Any]) -> dict[str, Any]:
        """Every field of the event (utc_datetime still None), in the contract's order; raises GiveUp or
        KeyError."""
        # Each value's common form is read inline (a memo lookup, a class check): a call per field costs
        # as much as the rest of the row. Anything else goes to the field's reader.
        dates, amounts = _date_text.known, _AMOUNT_TEXTS
        if (bill_date := dates.get(v := row["BillDate"], _MISS)) is _MISS:
            bill_date = _date_text(v)
        if (local_date := dates.get(v := row["Date"], _MISS)) is _MISS:
            local_date = _date_text(v)
        if (v := row["UTCOffset"]).__class__ is not int or not -24 < v < 24:
            v = _offset_hours(v)
        offset = v
        if ((v := row["Charge"]).__class__ is not float and v.__class__ is not str) or (
            charge := amounts.get(v)
        ) is None:
            charge = _amount(v)
        if ((v := row["ChargeExcl"]).__class__ is not float and v.__class__ is not str) or (
            charge_excl := amounts.get(v)
        ) is None:
            charge_excl = _amount(v)
        direction = row["Direction"]
        return {
            "schema_version": EVENT_SCHEMA_VERSION,
            "feed": self._feed,
            "id": row_id,
            "account_code": _account(row["AccountCode"]),
            "direction": (direction.strip().lower() or None) if direction.__class__ is str else _text(direction),
            "call_type": (v.strip() or None) if (v := row["CallType"]).__class__ is str else _text(v),
            "bill_date": bill_date,
            "local_date": local_date,
            "local_time": _local_time(row["Time"]),
            "utc_datetime": None,
            "utc_offset_hours": offset,
            "a_party": (v.strip() or None) if (v := row["AParty"]).__class__ is str else _text(v),
            "b_party": (v.strip() or None) if (v := row["BParty"]).__class__ is str else _text(v),
            "bill_number": (v.strip() or None) if (v := row["BillNumber"]).__class__ is str else _text(v),
            "seconds": v if (v := row["Seconds"]).__class__ is int and 0 <= v <= _INT64_MAX else _count(v),
            "network_seconds": v
            if (v := row["NetworkSeconds"]).__class__ is int and 0 <= v <= _INT64_MAX
            else _count(v),
            "connect_seconds": v
            if (v := row["ConnectSeconds"]).__class__ is int and 0 <= v <= _INT64_MAX
            else _count(v),
            "charge": charge,
            "charge_excl": charge_excl,
            "free_units_used": v
            if (v := row["FreeUnitsUsed"]).__class__ is int and 0 <= v <= _INT64_MAX
            else _count(v),
            "text_desc1": (v.strip() or None) if (v := row["TextDesc1"]).__class__ is str else _text(v),
            "text_desc2": (v.strip() or None) if (v := row["TextDesc2"]).__class__ is str else _text(v),
            "release_cause": (v.strip() or None) if (v := row["ReleaseCause"]).__class__ is str else _text(v),
            "status": (v.strip() or None) if (v := row["Status"]).__class__ is str else _text(v),
            "service_type": (v.strip() or None) if (v := row["ServiceType"]).__class__ is str else _text(v),
            "billing_group": (v.strip() or None) if (v := row["BillingGroup"]).__class__ is str else _text(v),
            "calling_group": (v.strip() or None) if (v := row["CallingGroup"]).__class__ is str else _text(v),
            "profile": (v.strip() or None) if (v := row["Profile"]).__class__ is str else _text(v),
        }


def latest_micros(latest: datetime) -> int:
    """`latest` (an aware UTC moment) in microseconds from the epoch."""
    return (latest - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
