"""A whole JSON page read straight into prepared rows, where the C extension is built.

`prepared_rows` hands a page to the extension's page reader: each row in the common valid form comes back
as a `PreparedRow` (its event less the feed's prefix and the ID), with no Python object made for its
values; any other row comes back as the dict orjson makes of it, for the fast and checked paths to read.
A row whose call is more than `FUTURE_TOLERANCE` ahead of this host's clock at reading time is left as
a dict, for the checked path to explain.

None means the page is left to orjson whole: no extension, or a page the reader does not find plain JSON
(orjson then parses it, or explains what is wrong with it, exactly as without the reader).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from cdr_stream.records.event import MAX_EVENT_BYTES, PreparedRow
from cdr_stream.records.fastpath import latest_micros, native
from cdr_stream.records.processor import FUTURE_TOLERANCE

#: The most a prepared row's key and tail may take: half of an event's limit leaves room for any prefix.
_MAX_PREPARED_BYTES = MAX_EVENT_BYTES // 2


def _latest_us() -> int:
    return latest_micros(datetime.now(UTC) + FUTURE_TOLERANCE)


def scanned_rows(data: bytearray, first: bool) -> tuple[list[Any], int, bool] | None:
    """The rows of a piece of a JSON array streamed in, up to the first row it cannot finish (the data may
    end in it): (rows, bytes read, whether the array ended). `first`: the data starts before the array's
    '['; otherwise where a row is due. None where this reader does not go on (no extension, a row orjson
    refuses): the caller's parser takes the data from where it stands."""
    if native is None:
        return None
    try:
        scanned: tuple[list[Any], int, bool] | None = native.scan_rows(
            data, first, _latest_us(), orjson.loads, PreparedRow, _MAX_PREPARED_BYTES
        )
    except orjson.JSONDecodeError:
        return None
    return scanned


def prepared_rows(page: bytes | bytearray) -> list[Any] | None:
    """The rows of a JSON page (an array), prepared where they take the common form; None to leave the
    whole page to orjson."""
    if native is None:
        return None
    try:
        rows: list[Any] | None = native.parse_page(page, _latest_us(), orjson.loads, PreparedRow, _MAX_PREPARED_BYTES)
    except orjson.JSONDecodeError:  # a row orjson refuses: so is the page, and orjson says why
        return None
    return rows
