"""Turn a feed answer body into chunks of rows, holding at most one chunk (plus a bounded buffer) in memory.

`answer_row_chunks` is the one entry point: JSON goes to `json_row_chunks`, the text formats (csv, txt,
pipe) to the streamed parser in `cdr_stream.textparse`.

A JSON answer that fits in `buffer_limit` bytes is parsed whole with orjson (fast, and a truncated body
publishes nothing). A larger one is parsed incrementally with ijson, so even an answer with every row
since the beginning of time stays within bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Final

import ijson
import orjson

from cdr_stream.body import AnswerFormat, AnswerFormatError, Read, describe_body
from cdr_stream.textparse import text_row_chunks

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "AnswerFormat",
    "AnswerFormatError",
    "Read",
    "answer_row_chunks",
    "describe_body",
    "json_row_chunks",
    "text_row_chunks",
]

DEFAULT_BUFFER_LIMIT: Final = 8 * 1024 * 1024
_READ_SIZE: Final = 256 * 1024
_FIRST_NON_SPACE: Final = re.compile(rb"[^ \t\r\n]")


async def answer_row_chunks(read: Read, *, fmt: AnswerFormat, chunk_rows: int) -> AsyncGenerator[list[Any], None]:
    """Yield lists of at most `chunk_rows` rows of a body in format `fmt`; an empty body means no rows.

    Raises AnswerFormatError (with a fixed `reason`) on a body that is not what the format promises.
    """
    if fmt == "json":
        chunks = json_row_chunks(read, chunk_rows=chunk_rows)
    else:
        chunks = text_row_chunks(read, fmt=fmt, chunk_rows=chunk_rows)
    async with aclosing(chunks):  # a caller that stops early closes the parser too
        async for chunk in chunks:
            yield chunk


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
    read: Read, *, chunk_rows: int, buffer_limit: int = DEFAULT_BUFFER_LIMIT
) -> AsyncGenerator[list[Any], None]:
    """Yield lists of at most `chunk_rows` rows from a JSON array body; an empty body means no rows."""
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
