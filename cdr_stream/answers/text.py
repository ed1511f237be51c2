"""The text answer formats (csv, txt, pipe), parsed as a stream into rows keyed by the header's names.

Bytes are decoded as they arrive and only complete records go to the csv module, so memory holds one
read, one chunk of rows and at most one unfinished record, whatever the size of the answer. Columns are
found by header name: their order is free, and a column the contract does not name is passed on like an
extra JSON field. Every value stays the string it was: the row validator reads numbers from digits, and
an empty field means what "" means in JSON.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import AsyncGenerator
from operator import itemgetter
from typing import Any, Final

from cdr_stream.answers.formats import READ_SIZE, TEXT_DELIMITERS, Read, TextFormat, describe_body
from cdr_stream.errors import AnswerFormatError, FailureReason
from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.records.processor import ROW_SCHEMA_FILE, MalformedRow, load_schema

#: The longest record (all its lines) held while waiting for its end; beyond it the answer is refused.
MAX_RECORD_CHARS: Final = 1024 * 1024
# Line breaks str.splitlines honours besides \r\n, \r and \n; inside a field they must not split a record.
_OTHER_BREAKS: Final = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
# A line that closes any quoted field left open: the probe that tells a whole record from a cut one.
_CLOSE_QUOTE: Final = '"\n'

Row = dict[str, str] | MalformedRow


def _split_lines(text: str) -> list[str]:
    """The lines of `text` (which ends with a line end), each with its line end: \r\n, \r or \n."""
    if not any(mark in text for mark in _OTHER_BREAKS):
        return text.splitlines(keepends=True)  # several times faster, and the same lines here
    return _LINE.findall(text)


class _Header:
    """The answer's columns: their names, and which of them have a name to key values on."""

    def __init__(self, values: list[str], line: str) -> None:
        names = [value.strip() for value in values]
        if not any(name in FEED_FIELDS for name in names):
            shown = describe_body(line.encode())
            raise AnswerFormatError(
                FailureReason.MISSING_HEADER, f"the answer does not start with a header row: {shown}"
            )
        doubled = sorted({name for name in names if name and names.count(name) > 1})
        if doubled:
            raise AnswerFormatError(
                FailureReason.INVALID_HEADER, f"the header names {', '.join(doubled)} more than once"
            )
        required: list[str] = load_schema(ROW_SCHEMA_FILE)["required"]
        missing = [name for name in required if name not in names]
        if missing:
            raise AnswerFormatError(
                FailureReason.MISSING_COLUMN,
                f"the header has no column {', '.join(missing)}; every row would lack it (columns: "
                f"{', '.join(name for name in names if name)})",
            )
        self.width = len(names)
        # A column without a name (a trailing separator) has nothing to key its values on.
        kept = [index for index, name in enumerate(names) if name]
        self.names = [names[index] for index in kept]
        self.select = None if len(kept) == len(names) else itemgetter(*kept)


class TextRowParser:
    """Feeds on pieces of a text body and returns the rows each completes (the first record is the header)."""

    def __init__(self, fmt: TextFormat) -> None:
        self._delimiter = TEXT_DELIMITERS[fmt]
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops a leading BOM
        self._pending = ""
        self._line = 0  # lines handed to the csv module so far, for error messages
        self._header: _Header | None = None

    def feed(self, piece: bytes, *, final: bool = False) -> list[Row]:
        try:
            text = self._pending + self._decoder.decode(piece, final)
        except UnicodeDecodeError as exc:
            raise AnswerFormatError(
                FailureReason.INVALID_TEXT, f"the answer is not UTF-8 near line {self._line + 1}: {exc.reason}"
            ) from None
        if final:
            # A last line without its newline is complete; a cut-off body is the transport's to report.
            if text and not text.endswith(("\n", "\r")):
                text += "\n"
            cut = len(text)
        else:
            cut = max(text.rfind("\n"), text.rfind("\r")) + 1  # a \r\n cut in two leaves a blank line
        complete, self._pending = text[:cut], text[cut:]
        rows: list[Row] = []
        if complete:
            open_record = self._parse(complete, rows)
            if open_record:
                if final:
                    raise AnswerFormatError(
                        FailureReason.INVALID_TEXT,
                        f"the answer ends inside a quoted field that opens on line {self._line + 1}",
                    )
                self._pending = open_record + self._pending
        if len(self._pending) > MAX_RECORD_CHARS:
            raise AnswerFormatError(
                FailureReason.INVALID_TEXT,
                f"the record on line {self._line + 1} is longer than {MAX_RECORD_CHARS} characters",
            )
        return rows

    def _parse(self, text: str, rows: list[Row]) -> str:
        """Parse the whole records of `text` into `rows`; return the lines of a record still open at its end."""
        lines = _split_lines(text)
        last = len(lines)
        reader = csv.reader(lines, delimiter=self._delimiter)
        consumed = 0
        header = self._header
        append = rows.append
        try:
            for values in reader:
                start, consumed = consumed, reader.line_num
                # Only a record that reaches the last line can be cut off (a quoted field still open).
                if consumed == last and not self._closed(lines[start:]):
                    consumed = start
                    break
                if header is not None and len(values) == header.width:
                    select = header.select
                    append(dict(zip(header.names, values if select is None else select(values), strict=False)))
                elif not values:
                    continue  # a blank line
                elif header is None:
                    header = self._header = _Header(values, lines[start])
                else:
                    reason = f"line {self._line + start + 1}: {len(values)} values for the {header.width} columns"
                    append(MalformedRow(values, reason + " of the header"))
        except csv.Error as exc:
            # Lines end at every line break, so this is a quoted field beyond the csv module's field limit.
            raise AnswerFormatError(FailureReason.INVALID_TEXT, f"line {self._line + consumed + 1}: {exc}") from None
        self._line += consumed
        return "".join(lines[consumed:])

    def _closed(self, record: list[str]) -> bool:
        """Whether these lines hold one whole record: if a quoted field is still open, the probe line is read too."""
        probe = csv.reader([*record, _CLOSE_QUOTE], delimiter=self._delimiter)
        next(probe)
        return probe.line_num == len(record)


async def text_row_chunks(
    read: Read, *, fmt: TextFormat, chunk_rows: int, read_size: int = READ_SIZE
) -> AsyncGenerator[list[Any], None]:
    """Yield lists of at most `chunk_rows` rows of a text body; an empty body, or a header alone, means no rows."""
    parser = TextRowParser(fmt)
    chunk: list[Any] = []
    at_end = False
    while not at_end:
        piece = await read(read_size)
        at_end = not piece
        for row in parser.feed(piece, final=at_end):
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
