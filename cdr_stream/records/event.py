"""An event as it is published: its value's JSON, its schema version and the most it may take."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import orjson

EVENT_SCHEMA_VERSION: Final = 2
#: The most an event (key and value) may take. A record must fit in one producer batch, and no retry can
#: make a bigger one fit: it would fail its transaction for ever. A CDR takes well under 1 KiB.
MAX_EVENT_BYTES: Final = 256 * 1024


class Event(NamedTuple):
    """One normalized row, ready to publish. A tuple: one is built per row, so it must be cheap."""

    id: int
    key: bytes
    timestamp_ms: int
    value: bytes
    #: The labels (UNREADABLE_LABELS) of the values published as null because they could not be read.
    unreadable: tuple[str, ...] = ()


class PreparedRow(NamedTuple):
    """A row of a JSON page that the page reader (`cdr_stream.records.page`) already turned into most of its
    event: everything but the feed's prefix and the ID, which `FastNormalizer.prepared` puts in front."""

    id: int
    key: bytes
    timestamp_ms: int
    #: The event's JSON after its ID: `,"account_code":...}`.
    tail: bytes


def dumps(value: Any) -> bytes:
    """JSON bytes of exactly their size. orjson's result keeps a buffer of about 4 KiB whatever the
    length; thousands of events held for one transaction would pin (and page-fault) that much each."""
    return bytes(memoryview(orjson.dumps(value, default=str)))
