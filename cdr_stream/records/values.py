"""How each feed value is read into its event value: the readers shared by the checked path
(`cdr_stream.records.processor`) and the fast path (`cdr_stream.records.fastpath`).

A reader raises ValueError (or TypeError, OverflowError) on a value it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

# Counts are 64-bit signed in every consumer language that matters (Java long, Avro long).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Whitespace around a number or an ID that is read past (PHP's trim() set, less NUL and vertical tab).
SPACE: Final = " \t\r\n"
#: MySQL's unset DATE and DATETIME: an empty date.
_ZERO_DATES: Final = frozenset(("0000-00-00", "0000-00-00 00:00:00"))


Converter = Callable[[Any], Any]


def read_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def read_lower_text(value: Any) -> str | None:
    text = read_text(value)
    return text.lower() if text else None


def read_integer(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value.isdigit():
            return int(value)  # the common case; at most 18 digits (the row schema): within 64 bits
        text = value.strip(SPACE)
        if not text:
            return None
        # "60.0": how PHP writes a whole float (the row schema allows only zeros after the point).
        number = int(text.partition(".")[0])
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        number = int(value)
    else:
        number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{number} does not fit in 64 bits")
    return number


def read_number(value: Any) -> int | float | None:
    """A count that may have a fraction (free units can be part minutes): an int when whole."""
    if value is None:
        return None
    number: int | float | Decimal = value
    if isinstance(value, str):
        text = value.strip(SPACE)
        if text.isdigit():
            return int(text)  # at most 18 digits (the row schema): within 64 bits
        if not text:
            return None
        number = Decimal(text)  # not float: a whole count of 18 digits stays exact
    if number == int(number):
        whole = int(number)
        if not INT64_MIN <= whole <= INT64_MAX:
            raise ValueError(f"{whole} does not fit in 64 bits")
        return whole
    fraction = float(number)
    return int(fraction) if fraction.is_integer() else fraction  # "131072.00000000001" is 131072 as a double


def decimal_text(value: Any) -> str:
    """An exact, canonical decimal string: no exponent, no trailing fractional zeros; the sign kept."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    # repr of a float is the shortest text that reads back to it, i.e. the digits the feed sent.
    text = repr(value) if isinstance(value, float) else str(value).strip(SPACE)
    if "e" in text or "E" in text or text.startswith("+"):
        try:
            text = format(Decimal(text), "f")
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not an amount") from exc
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def offset_hours(value: Any) -> int | float | None:
    """Hours from UTC, as a number or as the feed writes them: "12.75", "+13", "13:00", "+12:45"."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip(SPACE)
        if not text:
            return None
        hours, colon, minutes = text.partition(":")
        if colon:
            if int(minutes) >= 60:
                raise ValueError(f"{minutes} is not a number of minutes")
            sign = -1 if hours.startswith("-") else 1
            number = sign * (abs(int(hours)) * 60 + int(minutes)) / 60
        else:
            number = float(hours)
    else:
        number = float(value)
    if not -24 < number < 24:  # what a time zone can be (and what Python's timezone accepts)
        raise ValueError(f"{number:g} hours is not a UTC offset")
    return int(number) if number.is_integer() else number


def date_text(value: Any) -> str | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()  # also rejects 2024-02-31
    except ValueError:
        if value in _ZERO_DATES:
            return None
        raise


def time_text(value: Any) -> str | None:
    if not value:
        return None
    return time.fromisoformat(value).isoformat(timespec="seconds")  # HH:MM becomes HH:MM:00


def parse_utc(value: str) -> datetime:
    """UTCDateTime as sent (space or T, optional Z/offset) -> an aware UTC datetime."""
    if value.endswith("z"):  # RFC 3339 allows a lower-case z; fromisoformat does not
        value = value[:-1] + "Z"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def utc_moment_and_text(value: str) -> tuple[datetime, str]:
    """The moment, and its RFC 3339 text; the common "YYYY-MM-DD HH:MM:SS" form skips re-formatting.

    (Only that form: "YYYY-MM-DD HH:MM+HH" is 19 characters with a space too.)
    """
    moment = parse_utc(value)
    if len(value) == 19 and value[10] == " " and value[16] == ":":
        return moment, f"{value[:10]}T{value[11:]}Z"
    return moment, rfc3339(moment)
