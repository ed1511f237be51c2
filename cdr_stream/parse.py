"""Turn a feed answer body into chunks of rows, holding at most one chunk (plus a bounded buffer) in memory.

An answer that fits in `buffer_limit` bytes is parsed whole with orjson (fast, and a truncated body
publishes nothing). A larger one is parsed incrementally with ijson, so even an answer with every row
since the beginning of time stays within bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import ijson
import orjson

Read = Callable[[int], Awaitable[bytes]]

DEFAULT_BUFFER_LIMIT: Final = 8 * 1024 * 1024
_READ_SIZE: Final = 256 * 1024
_FIRST_NON_SPACE: Final = re.compile(rb"[^ \t\r\n]")


class AnswerFormatError(Exception):
    """The body is not what the format promises (an HTML page, truncated JSON, not an array...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def describe_body(body: bytes, limit: int = 80) -> str:
    """A short, printable start of a body, for error messages."""
    text = body[:limit].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return repr(text + ("..." if len(body) > limit else ""))


class _PrefixedReader:
    """Replays the bytes already read, then continues from the stream (what ijson's async API reads from).

    The prefix is handed out in slices and dropped as soon as it is used up, so the large first buffer
    does not stay alive for the rest of a streamed answer.
    """

    def __init__(self, prefix: bytearray, read: Read) -> None:
        self._prefix: bytearray | None = prefix
        self._position = 0
        self._read = read

    async def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson probes the type with read(0); the prefix must survive it
        size = _READ_SIZE if size is None or size < 0 else size
        if self._prefix is not None:
            piece = bytes(self._prefix[self._position : self._position + size])
            self._position += len(piece)
            if self._position >= len(self._prefix):
                self._prefix = None
            return piece
        return await self._read(size)


async def json_row_chunks(
    read: Read, *, chunk_rows: int, buffer_limit: int = DEFAULT_BUFFER_LIMIT, order: Callable[[Any], int] | None = None
) -> AsyncIterator[list[Any]]:
    """Yield lists of at most `chunk_rows` rows from a JSON array body; an empty body means no rows.

    With `order`, an answer parsed whole is sorted by it before it is cut into chunks: a shuffled answer
    larger than one chunk would otherwise have its late rows fall below the offset an earlier chunk
    committed. A streamed answer cannot be sorted within bounded memory; it comes in the feed's order.
    """
    buffer = bytearray()
    at_end = False
    while len(buffer) <= buffer_limit:
        piece = await read(_READ_SIZE)
        if not piece:
            at_end = True
            break
        buffer += piece
    first = _FIRST_NON_SPACE.search(buffer)
    if at_end and first is None:
        return
    if first is None or first.group() != b"[":
        start = first.start() if first else 0
        raise AnswerFormatError(
            "not_json_array", f"the answer does not start with '[': {describe_body(bytes(buffer[start : start + 100]))}"
        )

    if at_end:
        try:
            rows = orjson.loads(buffer)
        except orjson.JSONDecodeError as exc:
            raise AnswerFormatError("invalid_json", f"{exc} (body of {len(buffer)} bytes)") from None
        del buffer
        if order is not None and isinstance(rows, list):
            rows.sort(key=order)
        for begin in range(0, len(rows), chunk_rows):
            yield rows[begin : begin + chunk_rows]
        return

    reader = _PrefixedReader(buffer, read)
    del buffer  # the reader owns it now, and lets go of it once ijson has consumed it
    chunk: list[Any] = []
    try:
        async for row in ijson.items_async(reader, "item", use_float=True):
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    except ijson.JSONError as exc:
        raise AnswerFormatError("invalid_json", f"{exc} (in a streamed answer)") from None
    if chunk:
        yield chunk
