"""Hypothesis strategies for feed rows and answer bodies, shared by the property tests and `dev/fuzz.py`.

Rows come in three kinds:
- valid: every field drawn from what the feed-row contract allows (PHP/MySQL forms included: "60.0", zero
  dates, "+13" and "13:00" offsets, padded numbers; no party for a service fee, negative amounts), so each
  one must become an event with nothing unreadable;
- mutated: a valid row with some fields deleted, retyped, blanked, swapped or set to a near miss
  (impossible dates, hour 24, numbers out of range, Unicode digits, whitespace Python and the schema
  disagree on, values nested hundreds of levels deep);
- anything: any JSON value where a row should be (a list, a number, null...).
Values are what a JSON parser can hand over: finite floats, strings without lone surrogates, and ints
within 64 bits (what a PHP feed can send), plus a few from the band up to 2**64 - 1 that orjson still
hands over as ints (it turns larger ones into floats).

Bodies are JSON arrays of such rows, serialized several ways (compact, indented, ASCII-escaped), with
optional JSON whitespace and a UTF-8 byte order mark around them, sometimes corrupted (truncated,
bytes inserted or changed, an HTML page, an object, nesting past the parsers' limits), and read back in
pieces of arbitrary sizes.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cdr_stream.records.fields import FEED_FIELDS

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The largest int orjson hands over; a larger literal arrives as a float.
WIRE_INT_MAX: Final = 2**64 - 1
#: Deeper than orjson's loads limit (1024) and its dumps limit (254), so both edges are crossed.
MAX_DEPTH: Final = 1100

#: The settings of the property tests: the same examples on every run (so a failure replays as is),
#: no example database in the worktree, no deadline (a 2-core machine shared with a Kafka broker has
#: slow moments), and no complaint about large draws (a body is meant to be large).
SUITE_SETTINGS: Final = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Whitespace and digits on which Python (str.strip, str.isdigit, int) and the schema's regular
# expressions (ASCII [0-9], ECMA-262 \s) disagree, plus a BOM, zero-width space and a combining mark.
AWKWARD_CHARS: Final = (
    "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200b\u2028\u2029\u202f\u3000\ufeff\u0301"
    "\u00b2\u0661\u0662\uff13"  # superscript two, Arabic-Indic one and two, fullwidth three
)
JSON_SPACE: Final = " \t\r\n"
BOM: Final = b"\xef\xbb\xbf"

_chars = st.characters(exclude_categories=("Cs",)) | st.sampled_from(AWKWARD_CHARS)
texts = st.text(_chars, max_size=12)
ints = st.integers(INT64_MIN, INT64_MAX)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def nested(depth: int, kind: str) -> Any:
    """A value `depth` containers deep: [[[...]]] or {"a": {"a": ...}}."""
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


deep_values = st.builds(nested, st.integers(200, MAX_DEPTH), st.sampled_from(("list", "object")))
any_values = json_values | deep_values


# --- valid field values ------------------------------------------------------------------------


def _digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


def _padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The value, sometimes after a space, as fixed-width exports send it."""
    return st.builds(lambda left, text, right: left + text + right, st.sampled_from(("", " ")), values, st.just(""))


_PHP_SPACE = st.sampled_from(("", "", " ", "  ", "\t", "\r\n"))


def _spaced(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A number as a PHP/MySQL export may write it: with spaces (or a tab, a line end) around it."""
    return st.builds(lambda left, text, right: left + text + right, _PHP_SPACE, values, _PHP_SPACE)


_word = st.text(string.ascii_letters + string.digits, min_size=1, max_size=10)
_blank = st.sampled_from(("", None))
valid_ids = (
    st.integers(1, INT64_MAX)
    | _digits(1, 10**18 - 1)
    | st.integers(1, 10**6).map(lambda n: f"{n:07d}")
    | _spaced(_digits(1, 10**18 - 1))
)
valid_accounts = _padded(_word) | ints
valid_texts = texts | ints | floats | st.none()
valid_parties = _padded(_digits(1, 10**15))
#: MySQL's unset DATE and DATETIME.
zero_dates = st.sampled_from(("0000-00-00", "0000-00-00 00:00:00"))
valid_dates = st.dates().map(lambda day: day.isoformat()) | _blank | zero_dates
valid_times = st.times().map(lambda moment: moment.isoformat(timespec="seconds")) | st.times().map(
    lambda moment: moment.isoformat(timespec="minutes")
)
valid_optional_integers = (
    st.integers(INT64_MIN, INT64_MAX)
    | st.integers(-(10**18) + 1, 10**18 - 1).map(str)
    | st.integers(-(2**53), 2**53).map(float)
    | _blank
    # PHP writes a whole float as "60.0"; exports pad numbers.
    | _spaced(st.builds(lambda n, zeros: f"{n}.{zeros}", st.integers(-(10**6), 10**6), st.sampled_from(("0", "00"))))
    | _spaced(st.integers(-(10**18) + 1, 10**18 - 1).map(str))
)
_decimal_strings = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole}{fraction}",
    st.sampled_from(("", "-", "+")),
    _digits(0, 10**15 - 1),
    st.sampled_from(("",)) | st.integers(0, 10**12 - 1).map(lambda n: f".{n:012d}"[: 2 + n % 12]),
)
valid_amounts = floats | ints | _decimal_strings | _spaced(_decimal_strings)
#: FreeUnitsUsed: a count of free units, which may be part minutes.
valid_units = valid_optional_integers | _spaced(_decimal_strings) | st.floats(-1e15, 1e15)
_offset_texts = st.builds(
    lambda sign, hours, minutes: f"{sign}{hours}:{minutes:02d}",
    st.sampled_from(("", "+", "-")),
    st.sampled_from(("0", "1", "5", "05", "12", "13", "23")),
    st.sampled_from((0, 15, 30, 45, 59)),
)
valid_offsets = (
    st.floats(-23.99, 23.99)
    | st.integers(-23, 23)
    | st.sampled_from(("12", "12.75", "-5.5", "+13", "0", "1", "13:00", "+12:45", "-05:30", " 13 "))
    | _offset_texts
    | _blank
)


@dataclass(frozen=True, slots=True)
class UtcText:
    """A UTCDateTime as the feed may write it, and the moment it means."""

    text: str
    moment: datetime


@st.composite
def utc_texts(draw: st.DrawFn) -> UtcText:
    """Every form the row schema allows: space or T, with or without seconds and a fraction, Z, z or an offset."""
    # Up to 2099: tests/properties.py's "now" is 2100 (later calls are refused as from the future).
    local = draw(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(2099, 12, 30)))
    text = local.date().isoformat() + draw(st.sampled_from(" T")) + local.time().isoformat(timespec="minutes")
    if draw(st.booleans()):
        text += f":{local.second:02d}"
        digits = draw(st.integers(0, 6))
        if digits:
            fraction = f"{local.microsecond:06d}"[:digits]
            text += "." + fraction
            local = local.replace(microsecond=int(fraction.ljust(6, "0")))
        else:
            local = local.replace(microsecond=0)
    else:
        local = local.replace(second=0, microsecond=0)
    zone = draw(st.sampled_from(("", "Z", "z", "+HH:MM", "+HHMM", "+HH")))
    offset = timedelta(0)
    if zone.startswith("+"):
        minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
        if zone == "+HH":
            minutes -= minutes % 60 if minutes >= 0 else -(-minutes % 60)
        sign, hours, rest = "-" if minutes < 0 else "+", abs(minutes) // 60, abs(minutes) % 60
        zone = {"+HH:MM": f"{sign}{hours:02d}:{rest:02d}", "+HHMM": f"{sign}{hours:02d}{rest:02d}"}.get(
            zone, f"{sign}{hours:02d}"
        )
        offset = timedelta(minutes=minutes)
    return UtcText(text + zone, (local - offset).replace(tzinfo=UTC))


_extra_names = texts.filter(lambda name: name not in FEED_FIELDS)


@st.composite
def valid_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row the contract says is valid: it must become exactly one event."""
    utc = draw(utc_texts())
    row: dict[str, Any] = {
        "ID": draw(valid_ids),
        "AccountCode": draw(valid_accounts),
        "Direction": draw(st.sampled_from(("Inbound", "Outbound", "OnNet", " outbound ")) | valid_texts),
        "CallType": draw(valid_texts),
        "BillDate": draw(valid_dates),
        "Date": draw(valid_dates),
        "Time": draw(valid_times | _blank),
        "UTCDateTime": utc.text,
        "UTCOffset": draw(valid_offsets),
        # Either party, or both, may be missing: an account-level service fee or credit has neither.
        "AParty": draw(valid_parties | _blank),
        "BParty": draw(valid_parties | valid_texts),
        "BillNumber": draw(valid_texts),
        "Seconds": draw(valid_optional_integers),
        "NetworkSeconds": draw(valid_optional_integers),
        "ConnectSeconds": draw(valid_optional_integers),
        "Charge": draw(valid_amounts),
        "ChargeExcl": draw(valid_amounts),
        "FreeUnitsUsed": draw(valid_units),
        "TextDesc1": draw(valid_texts),
        "TextDesc2": draw(valid_texts),
        "ReleaseCause": draw(st.sampled_from(("0016", "0017", "16")) | valid_texts),
        "Status": draw(valid_texts),
        "ServiceType": draw(valid_texts),
        "BillingGroup": draw(valid_texts),
        "CallingGroup": draw(valid_texts),
        "Profile": draw(valid_texts),
    }
    if draw(st.booleans()):
        # Shuffle a few parties away and add unknown columns.
        if draw(st.booleans()):
            row["AParty"], row["BParty"] = draw(valid_texts), draw(valid_parties)
        row.update(draw(st.dictionaries(_extra_names, json_values, max_size=3)))
    return row


_NUMERIC_FIELDS: Final = (
    "UTCOffset",
    "Seconds",
    "NetworkSeconds",
    "ConnectSeconds",
    "Charge",
    "ChargeExcl",
    "FreeUnitsUsed",
)


def _plain(value: Any) -> Any:
    """A number whose text (repr) a feed would write: no exponent, at most 15 digits before the point and 4
    after it; the sign kept."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    magnitude = round(abs(value) % 1e9, 4) if isinstance(value, float) else abs(value) % 10**15
    return -magnitude if value < 0 or (isinstance(value, float) and str(value).startswith("-")) else magnitude


def plain_numbers(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its numbers in the range a feed writes as plain digits, so that each has a text form (an ID
    as text has at most 18 digits)."""
    plain = {name: _plain(value) if name in _NUMERIC_FIELDS else value for name, value in row.items()}
    if isinstance(plain["ID"], int):
        plain["ID"] = plain["ID"] % 10**15 or 1
    return plain


plain_rows = valid_rows().map(plain_numbers)


# --- mutations ---------------------------------------------------------------------------------

_near_misses = st.sampled_from(
    (
        "",
        " ",
        "\x1c",
        "\x85",
        "\u3000",
        "\ufeff",
        "2024-02-30",
        "2024-13-01",
        "0000-01-01",
        "9999-12-31",
        "2024-1-1",
        "24:00:00",
        "23:59:60",
        "12:60",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01 00:00:00",
        "2100-01-01 00:15:00.000001",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01t00:00:00",
        "2024-01-01T00:00:00.1234567Z",
        "12x",
        " 12 ",
        "1_000",
        "1e5",
        "1e400",
        "-0",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "\u00b2",
        "\u0661\u0662\u0663",
        "\uff11\uff12",
        "999999999999999999",
        "9999999999999999999",
        "-999999999999999999",
        "999999999999999.999999999999",
        "0.000000000001",
        "<br />",
    )
)
_near_numbers = st.sampled_from(
    (
        0,
        -1,
        True,
        False,
        1e20,
        -1e20,
        1e300,
        -1e300,
        5e-324,
        1.5,
        -0.0,
        24,
        -24,
        24.0,
        INT64_MAX,
        INT64_MIN,
        INT64_MAX + 1,
        WIRE_INT_MAX,
        float(2**63),
        float(2**64),
    )
)
_shallow_mutations = _near_misses | _near_numbers | json_values | valid_texts | valid_amounts | valid_dates
_mutations = _shallow_mutations | deep_values


@st.composite
def mutated_rows(draw: st.DrawFn, *, deep: bool = True) -> dict[str, Any]:
    """A valid row with one to six fields deleted, blanked, turned into text or set to another value.

    `deep=False` leaves out the values nested hundreds of levels deep (a body's serializer refuses them;
    bodies get their own deep case).
    """
    row = draw(valid_rows())
    names = draw(st.lists(st.sampled_from(FEED_FIELDS), min_size=1, max_size=6, unique=True))
    for name in names:
        how = draw(st.sampled_from(("delete", "blank", "text", "value", "value")))
        if how == "delete":
            del row[name]
        elif how == "blank":
            row[name] = draw(st.sampled_from(("", " ", None, "\t")))
        elif how == "text":
            value = row[name]
            row[name] = value if isinstance(value, str) else json.dumps(value)
        else:
            row[name] = draw(_mutations if deep else _shallow_mutations)
    return row


rows = valid_rows() | mutated_rows() | any_values


@st.composite
def row_lists(draw: st.DrawFn, max_size: int = 20) -> list[Any]:
    """Rows of all kinds; often with IDs from a small range, so repeats and the floor come into play."""
    found = draw(st.lists(rows, max_size=max_size))
    if draw(st.booleans()):
        for row in found:
            if isinstance(row, dict) and "ID" in row and draw(st.integers(0, 4)):
                row["ID"] = draw(st.integers(1, 30) | st.integers(1, 30).map(str))
    return found


valid_row_lists = st.lists(valid_rows(), max_size=12)
floors = st.integers(0, 20)


# --- bodies --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Body:
    """An answer body, how it is read, and the rows it holds when it is intact."""

    data: bytes
    rows: list[Any] | None
    pieces: tuple[int, ...]
    chunk_rows: int
    buffer_limit: int

    def __repr__(self) -> str:  # hypothesis prints it on a failure: keep it readable
        return (
            f"Body(data={self.data[:300]!r}{'...' if len(self.data) > 300 else ''} ({len(self.data)} bytes), "
            f"rows={None if self.rows is None else len(self.rows)}, pieces={self.pieces}, "
            f"chunk_rows={self.chunk_rows}, buffer_limit={self.buffer_limit})"
        )


def _serialize(value: Any, style: str) -> bytes:
    if style == "orjson":
        return orjson.dumps(value)
    if style == "indented":
        return json.dumps(value, indent=2, ensure_ascii=False).encode()
    if style == "ascii":
        return json.dumps(value, separators=(",", ":")).encode()  # \uXXXX escapes, surrogate pairs
    return json.dumps(value, separators=(" , ", " : "), ensure_ascii=False).encode()


_CORRUPTIONS: Final = ("truncate", "insert", "replace", "html", "object", "deep", "big_int", "concatenated")


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    found = draw(st.lists(valid_rows() | mutated_rows(deep=False) | json_values, max_size=8))
    data = _serialize(found, draw(st.sampled_from(("orjson", "indented", "ascii", "spaced"))))
    expected: list[Any] | None = found
    lead = draw(st.text(JSON_SPACE, max_size=4) | st.integers(0, 120).map(lambda n: " " * n))
    data = (BOM if draw(st.integers(0, 5)) == 0 else b"") + lead.encode() + data
    data += draw(st.text(JSON_SPACE, max_size=4)).encode()
    corruption = draw(st.sampled_from((None, None, None, *_CORRUPTIONS)))
    if corruption is not None:
        expected = None
        at = draw(st.integers(0, len(data)))
        if corruption == "truncate":
            data = data[:at]
        elif corruption == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        elif corruption == "replace":
            data = data[:at] + draw(st.binary(min_size=1, max_size=1)) + data[at + 1 :]
        elif corruption == "html":
            data = b"<br />\n<b>Warning</b>: mysqli_connect(): Connection refused<br />\n" + data
        elif corruption == "object":
            data = b'{"rows": ' + data + b"}"
        elif corruption == "deep":
            depth = draw(st.integers(200, MAX_DEPTH))
            opener, closer = draw(st.sampled_from(((b"[", b"]"), (b'{"a":', b"}"))))
            data = b"[" + opener * depth + b"1" + closer * depth + b"]"
        elif corruption == "big_int":
            data = b'[{"ID": ' + str(draw(st.integers(2**63, 10**30))).encode() + b"}]"
        else:
            data = data + data
    pieces = tuple(draw(st.lists(st.integers(1, 64) | st.just(1 << 20), min_size=1, max_size=4)))
    return Body(data, expected, pieces, draw(st.integers(1, 5)), draw(st.integers(0, 64)))
