"""Turning feed rows into the bytes of each answer format, with a per-row cache of those bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

import orjson

from cdr_stream.answers.formats import ANSWER_FORMATS, TEXT_DELIMITERS
from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.simulator.generator import FeedGenerator, FeedRow

NumbersAs = Literal["number", "string"]
FORMATS: Final = ANSWER_FORMATS
CONTENT_TYPES: Final = {
    "json": "application/json",
    "csv": "text/csv",
    "txt": "text/plain",
    "pipe": "text/plain",
}


@dataclass(frozen=True, slots=True)
class Framing:
    """What goes before, between and after the rendered rows of one answer."""

    opening: bytes
    separator: bytes
    closing: bytes
    empty: bytes


def _money_as_number(value: object) -> orjson.Fragment:
    # A raw fragment keeps "0.1900" exactly as computed instead of going through a float.
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_row(row: FeedRow, numbers_as: NumbersAs) -> bytes:
    if numbers_as == "string":
        rendered = orjson.dumps({name: str(value) for name, value in row.items()})
    else:
        rendered = orjson.dumps(row, default=_money_as_number)
    # orjson's bytes keep its whole ~8 KiB write buffer; an exact copy is what a cache can afford to hold.
    return bytes(memoryview(rendered))


class _LineWriter:
    """csv.writer over a reusable buffer, so one row renders to one quoted line."""

    def __init__(self, fmt: str) -> None:
        self._buffer = io.StringIO()
        # The feed is PHP, whose CSV writer ends lines with a bare newline.
        self._writer = csv.writer(self._buffer, delimiter=TEXT_DELIMITERS[fmt], lineterminator="\n")

    def line(self, values: Sequence[object]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(values)
        return self._buffer.getvalue().encode()


def framing(fmt: str) -> Framing:
    if fmt == "json":
        return Framing(b"[\n", b",\n", b"\n]\n", b"[]\n")
    header = _LineWriter(fmt).line(FEED_FIELDS)
    return Framing(header, b"", b"", header)


class RowCache:
    """Rendered rows per format, kept after first use so serving them again is a join of bytes."""

    def __init__(self, generator: FeedGenerator, numbers_as: NumbersAs) -> None:
        self.generator = generator
        self.numbers_as: NumbersAs = numbers_as
        self._first_id = generator.config.first_id
        self._cache: dict[str, list[bytes | None]] = {fmt: [] for fmt in FORMATS}
        self._writers = {fmt: _LineWriter(fmt) for fmt in TEXT_DELIMITERS}

    def render(self, row: FeedRow, fmt: str) -> bytes:
        if fmt == "json":
            return json_row(row, self.numbers_as)
        # A row missing a field (a deliberately broken one) still fills every column.
        return self._writers[fmt].line([row.get(name, "") for name in FEED_FIELDS])

    def rows(self, ids: Sequence[int], fmt: str) -> list[bytes]:
        cache = self._cache[fmt]
        needed = max(ids, default=0) - self._first_id + 1
        if needed > len(cache):
            cache.extend([None] * (needed - len(cache)))
        out: list[bytes] = []
        for record_id in ids:
            index = record_id - self._first_id
            rendered = cache[index]
            if rendered is None:
                rendered = cache[index] = self.render(self.generator.row(record_id), fmt)
            out.append(rendered)
        return out

    def preload(self, last_id: int, fmt: str = "json") -> None:
        self.rows(range(self._first_id, last_id + 1), fmt)
