"""Turn a feed answer body into chunks of rows, holding at most one chunk (plus a bounded buffer) in memory.

`answer_row_chunks` is the one entry point: JSON goes to `json_row_chunks`, the text formats (csv, txt,
pipe) to the streamed parser in `cdr_stream.answers.text`.

A JSON answer that fits in `buffer_limit` bytes is parsed whole (fast, and a truncated body publishes
nothing): with `prepare`, by the page reader (`cdr_stream.records.page`), else, or where the reader leaves
it, by orjson. A larger one is parsed incrementally, so even an answer with every row since the beginning
of time stays within bounded memory: by the page reader a piece at a time with `prepare`, by ijson
otherwise and from any row the reader cannot finish.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Final

import ijson
import orjson

from cdr_stream.answers.formats import READ_SIZE, AnswerFormat, Read, describe_body
from cdr_stream.answers.text import text_row_chunks
from cdr_stream.errors import AnswerFormatError, FailureReason
from cdr_stream.records.page import prepared_rows, scanned_rows

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
#: The most a row of a streamed answer may take for the page reader to wait for its end: a larger one (or
#: bytes that are no JSON) goes to ijson with the rest of the answer.
_ROW_LIMIT: Final = DEFAULT_BUFFER_LIMIT
_FIRST_NON_SPACE: Final = re.compile(rb"[^ \t\r\n]")
_BOM: Final = b"\xef\xbb\xbf"
# yajl skips a vertical tab or a form feed between tokens as whitespace; JSON (and orjson) does not, and
# neither byte can stand anywhere in valid JSON (a string must escape it).
_NOT_IN_JSON: Final = re.compile(rb"[\x0b\x0c]")


def answer_row_chunks(
    read: Read, *, fmt: AnswerFormat, chunk_rows: int, prepare: bool = False
) -> AsyncGenerator[list[Any], None]:
    """The parser of format `fmt`: it yields lists of at most `chunk_rows` rows of a body, in the body's
    order; an empty body means no rows. (`cdr_stream.answers.order` puts a whole answer in ID order.)
    With `prepare`, rows of a JSON body read whole may come as `PreparedRow`s (`cdr_stream.records.page`).

    The parser itself is returned, not a generator around it, which would hold on to each chunk while
    the next is parsed. It raises AnswerFormatError (with a fixed `reason`) on a body that is not what
    the format promises.
    """
    if fmt == "json":
        return json_row_chunks(read, chunk_rows=chunk_rows, prepare=prepare)
    return text_row_chunks(read, fmt=fmt, chunk_rows=chunk_rows)


class _PrefixedReader:
    """Replays the bytes already read, then continues from the stream (what ijson's async API reads from).

    The prefix is handed out in slices, each cut off the buffer as it goes: a bytearray reallocates
    itself smaller once less than half of it is left, so the large first buffer shrinks while the rows
    it holds are parsed (and held, before the answer spills), and is gone once used up.
    """

    def __init__(self, prefix: bytearray, read: Read) -> None:
        self._prefix = prefix
        self._read = read

    async def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson probes the type with read(0); the prefix must survive it
        size = READ_SIZE if size is None or size < 0 else size
        if self._prefix:
            piece = bytes(self._prefix[:size])
            del self._prefix[:size]
        else:
            piece = await self._read(size)
        if _NOT_IN_JSON.search(piece):
            raise AnswerFormatError(
                FailureReason.INVALID_JSON, "a vertical tab or form feed byte, which JSON does not allow"
            )
        return piece


async def _opening(read: Read, buffer_limit: int) -> tuple[bytearray, bool]:
    """The start of the body, past a leading UTF-8 byte order mark and whitespace, and whether it is all
    of it: more than `buffer_limit` bytes of it, unless the body is shorter.

    Neither the BOM nor the whitespace is kept. Some PHP scripts send a BOM first (a source file saved
    with one), and JSON lets a parser ignore it. Whitespace is dropped as it comes, so even a body of
    more whitespace than `buffer_limit` ends up on the same path as without it.
    """
    buffer = bytearray()
    at_end = False

    async def read_more() -> None:
        nonlocal at_end
        piece = await read(READ_SIZE)
        at_end = not piece
        buffer.extend(piece)

    while len(buffer) < len(_BOM) and not at_end:
        await read_more()
    if buffer.startswith(_BOM):
        del buffer[: len(_BOM)]
    while not at_end and _FIRST_NON_SPACE.search(buffer) is None:
        buffer.clear()
        await read_more()
    while not at_end and len(buffer) <= buffer_limit:
        await read_more()
    return buffer, at_end


def _first_non_space(buffer: bytearray) -> int | None:
    """Where the first byte that is not whitespace is, if any.

    Only the position leaves: a match object holds on to the buffer it searched, which would keep the
    whole opening alive for as long as the answer is read.
    """
    found = _FIRST_NON_SPACE.search(buffer)
    return None if found is None else found.start()


async def json_row_chunks(
    read: Read, *, chunk_rows: int, buffer_limit: int = DEFAULT_BUFFER_LIMIT, prepare: bool = False
) -> AsyncGenerator[list[Any], None]:
    """Yield lists of at most `chunk_rows` rows from a JSON array body, in its order; an empty body means no rows.

    With `prepare`, a body read whole goes to the page reader first: its rows in the common form come as
    `PreparedRow`s, the others as dicts."""
    buffer, at_end = await _opening(read, buffer_limit)
    start = _first_non_space(buffer)
    if start is None:  # only at the end: the opening holds a non-space byte otherwise
        return
    if buffer[start] != ord("["):
        raise AnswerFormatError(
            FailureReason.NOT_JSON_ARRAY,
            f"the answer does not start with '[': {describe_body(bytes(buffer[start : start + 100]))}",
        )

    if at_end:
        rows = prepared_rows(buffer) if prepare else None
        if rows is None:
            try:
                rows = orjson.loads(buffer)
            except orjson.JSONDecodeError as exc:
                raise AnswerFormatError(FailureReason.INVALID_JSON, f"{exc} (body of {len(buffer)} bytes)") from None
        del buffer
        for begin in range(0, len(rows), chunk_rows):
            yield rows[begin : begin + chunk_rows]
        return

    if prepare:
        chunks = _scanned_chunks(buffer, read, chunk_rows=chunk_rows)
    else:
        chunks = _streamed_chunks(_PrefixedReader(buffer, read), chunk_rows=chunk_rows)
    del buffer  # the chunks' reader owns it now, and lets go of it as it is consumed
    async with aclosing(chunks):
        async for chunk in chunks:
            yield chunk
            del chunk


async def _streamed_chunks(reader: _PrefixedReader, *, chunk_rows: int) -> AsyncGenerator[list[Any], None]:
    """The rows of a JSON array too large to read whole, parsed by ijson as they arrive."""
    chunk: list[Any] = []
    try:
        async for row in ijson.items_async(reader, "item", use_float=True):
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    # UnicodeDecodeError: yajl hands a string with bytes that are not UTF-8 on to be decoded.
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise AnswerFormatError(FailureReason.INVALID_JSON, f"{exc} (in a streamed answer)") from None
    if chunk:
        yield chunk


async def _scanned_chunks(data: bytearray, read: Read, *, chunk_rows: int) -> AsyncGenerator[list[Any], None]:
    """The rows of a JSON array too large to read whole, read by the page reader a piece at a time
    (`cdr_stream.records.page.scanned_rows`); from a row it cannot finish with `_ROW_LIMIT` bytes more (or
    none left), ijson reads the rest and explains what is wrong, as with the whole answer streamed."""
    first, at_end = True, False
    while (scanned := scanned_rows(data, first)) is not None:
        rows, consumed, ended = scanned
        if consumed:
            del data[:consumed]
            first = False
        for begin in range(0, len(rows), chunk_rows):
            yield rows[begin : begin + chunk_rows]
        del rows
        if ended:
            await _nothing_after(data, read)
            return
        if at_end or len(data) > _ROW_LIMIT:
            break
        piece = await read(READ_SIZE)
        at_end = not piece
        data.extend(piece)
    rest = data if first else bytearray(b"[") + data  # the row it stopped at opens an array of the rest
    del data
    async with aclosing(_streamed_chunks(_PrefixedReader(rest, read), chunk_rows=chunk_rows)) as chunks:
        async for chunk in chunks:
            yield chunk
            del chunk


async def _nothing_after(data: bytearray, read: Read) -> None:
    """Raise AnswerFormatError unless only whitespace follows the array, to the end of the body (as orjson
    and ijson require)."""
    while True:
        found = _FIRST_NON_SPACE.search(data)
        if found is not None:
            raise AnswerFormatError(
                FailureReason.INVALID_JSON,
                f"more after the JSON array: {describe_body(bytes(data[found.start() : found.start() + 100]))}",
            )
        piece = await read(READ_SIZE)
        if not piece:
            return
        data = bytearray(piece)
