"""The streamed text parser: columns by header name, quoting, BOM and CRLF, bounded memory, and its failures."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cdr_stream.answers.formats import TextFormat
from cdr_stream.answers.text import MAX_RECORD_CHARS, TextRowParser, text_row_chunks
from cdr_stream.errors import AnswerFormatError
from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.records.processor import MalformedRow, RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.formats import RowCache, framing
from tests.answers.test_parse import reader
from tests.memory import rss_kib

HEADER = "ID,AccountCode,UTCDateTime,Charge,ChargeExcl"


async def rows_of(body: bytes, fmt: TextFormat = "csv", *, piece: int = 5, chunk_rows: int = 1000) -> list[Any]:
    chunks = text_row_chunks(reader(body, piece), fmt=fmt, chunk_rows=chunk_rows, read_size=piece)
    return [row async for chunk in chunks for row in chunk]


def simulated_body(fmt: str, count: int, *, seed: int = 1) -> bytes:
    cache = RowCache(FeedGenerator(GeneratorConfig(seed=seed, span_records=count, invalid_rate=0.02)), "number")
    frame = framing(fmt)
    return frame.opening + frame.separator.join(cache.rows(range(1, count + 1), fmt)) + frame.closing


@pytest.mark.parametrize("body", [b"", b"\xef\xbb\xbf", b"\r\n\n", HEADER.encode(), f"{HEADER}\r\n".encode()])
async def test_an_empty_body_or_a_header_alone_has_no_rows(body: bytes) -> None:
    assert await rows_of(body) == []


async def test_columns_are_found_by_name_in_any_order_and_extra_columns_are_passed_on() -> None:
    body = b"Charge,Note,ID,ChargeExcl,UTCDateTime,AccountCode\n1.15,hi,7,1.00,2024-04-05 22:11:12,812\n"
    assert await rows_of(body) == [
        {
            "Charge": "1.15",
            "Note": "hi",
            "ID": "7",
            "ChargeExcl": "1.00",
            "UTCDateTime": "2024-04-05 22:11:12",
            "AccountCode": "812",
        }
    ]


@pytest.mark.parametrize(("fmt", "separator"), [("csv", ","), ("txt", "\t"), ("pipe", "|")])
@pytest.mark.parametrize("piece", [1, 3, 64, 1 << 16])
async def test_quoted_separators_quotes_and_newlines_survive_any_split_of_the_bytes(
    fmt: TextFormat, separator: str, piece: int
) -> None:
    tricky = f'a{separator}b "c"\r\nd\u2028e'
    quoted = '"' + tricky.replace('"', '""') + '"'
    line = separator.join(["1", "812", "2024-04-05 22:11:12", "1", quoted])
    body = "\ufeff" + separator.join(HEADER.split(",")) + "\r\n" + line + "\r\n" + line.replace("1", "2", 1) + "\r\n"
    rows = await rows_of(body.encode(), fmt, piece=piece)
    assert [row["ID"] for row in rows] == ["1", "2"]
    assert rows[0]["ChargeExcl"] == tricky


async def test_a_bom_and_crlf_line_ends_are_tolerated() -> None:
    body = b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n1,812,2024-04-05 22:11:12,1,1\r\n"
    (row,) = await rows_of(body)
    assert list(row) == HEADER.split(",")
    assert row["ChargeExcl"] == "1"


async def test_a_last_line_without_its_newline_is_a_row() -> None:
    rows = await rows_of(f"{HEADER}\n1,812,2024-04-05 22:11:12,1,1\n2,812,2024-04-05 22:11:12,1,1".encode())
    assert [row["ID"] for row in rows] == ["1", "2"]


async def test_a_row_with_the_wrong_number_of_values_is_a_malformed_row_and_the_rest_go_on() -> None:
    body = f"{HEADER}\n1,812,2024-04-05 22:11:12,1,1\n2,812,x,y,1,1\n3,812\n\n4,812,2024-04-05 22:11:12,1,1\n"
    rows = await rows_of(body.encode())
    assert [type(row) for row in rows] == [dict, MalformedRow, MalformedRow, dict]
    assert rows[1].values == ["2", "812", "x", "y", "1", "1"]
    assert rows[1].reason == "line 3: 6 values for the 5 columns of the header"
    assert rows[2].reason.startswith("line 4: 2 values")


async def test_an_unnamed_column_from_a_trailing_separator_is_dropped() -> None:
    (row,) = await rows_of(f"{HEADER},\n1,812,2024-04-05 22:11:12,1,1,\n".encode())
    assert list(row) == HEADER.split(",")


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        (b"<html><body>Database error</body></html>\n", "missing_header", "does not start with a header"),
        (b'[{"ID": 1}]', "missing_header", "does not start with a header"),
        (b"ID,AccountCode,Charge\n1,2,3\n", "missing_column", "UTCDateTime, ChargeExcl"),
        (b"ID,ID,AccountCode,UTCDateTime,Charge,ChargeExcl\n", "invalid_header", "ID more than once"),
        (HEADER.encode() + b'\n1,812,"2024-04-05 22:11:12,1,1\n', "invalid_text", "ends inside a quoted field"),
        (HEADER.encode() + b"\n1,\xff\xfe,x,1,1\n", "invalid_text", "not UTF-8"),
    ],
)
async def test_a_body_that_is_not_the_text_format_is_refused(body: bytes, reason: str, words: str) -> None:
    with pytest.raises(AnswerFormatError) as caught:
        await rows_of(body)
    assert caught.value.reason == reason
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "record",
    [
        b"1,812,2024-04-05 22:11:12,1," + b"x" * (MAX_RECORD_CHARS + 1),  # a line that never ends
        b'1,812,2024-04-05 22:11:12,1,"' + b"x\n" * (MAX_RECORD_CHARS // 2),  # a quoted field that never closes
        b'1,812,2024-04-05 22:11:12,1,"' + b"x" * 200_000 + b'"\n',  # beyond the csv module's field limit
    ],
)
async def test_a_record_too_long_to_hold_is_refused(record: bytes) -> None:
    with pytest.raises(AnswerFormatError) as caught:
        await rows_of(HEADER.encode() + b"\n" + record, piece=64 * 1024)
    assert caught.value.reason == "invalid_text"
    assert "line 2" in str(caught.value)


def test_rows_come_only_from_complete_records_whatever_the_pieces() -> None:
    body = simulated_body("csv", 300)
    seed = random.randrange(1 << 30)
    print(f"piece seed: {seed}")
    rng = random.Random(seed)
    whole = TextRowParser("csv").feed(body, final=True)
    parser = TextRowParser("csv")
    pieces: list[Any] = []
    position = 0
    while position < len(body):
        size = rng.randrange(1, 400)
        pieces += parser.feed(body[position : position + size])
        position += size
    pieces += parser.feed(b"", final=True)
    assert pieces == whole
    assert len(whole) == 300


@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe"])
async def test_text_rows_give_the_same_events_as_json_rows(fmt: TextFormat) -> None:
    def outcome(rows: list[Any]) -> tuple[list[Any], list[Any]]:
        chunk = RecordProcessor("f").process_chunk(rows, 0)
        return chunk.events, [(letter.id, letter.rule) for letter in chunk.dead_letters]

    import orjson

    events, letters = outcome(await rows_of(simulated_body(fmt, 2000), fmt, piece=4096))
    json_events, json_letters = outcome(orjson.loads(simulated_body("json", 2000)))
    assert events == json_events
    # A text row cannot leave a field out, only leave it empty: a missing AccountCode is an invalid one.
    assert letters == [(row_id, "invalid_field" if rule == "missing_field" else rule) for row_id, rule in json_letters]
    assert any(rule == "missing_field" for _, rule in json_letters)


async def test_memory_stays_bounded_on_a_large_streamed_answer() -> None:
    row = b"1,812,2024-04-05 22:11:12,1.15,1.00," + b"x" * 200 + b"\n"
    total = 200_000  # about 47 MB of rows, never held at once
    sent = -1  # the header first

    async def read(size: int) -> bytes:
        nonlocal sent
        if sent < 0:
            sent = 0
            return (HEADER + ",Note\n").encode()
        count = min(size // len(row), total - sent)
        sent += count
        return row * count

    before = rss_kib()
    seen = 0
    async for chunk in text_row_chunks(read, fmt="csv", chunk_rows=1000):
        seen += len(chunk)
    assert seen == total
    assert rss_kib() - before < 30_000, "the parser held a large part of the body"


def test_the_header_names_every_contract_field_the_simulator_sends() -> None:
    (row,) = TextRowParser("pipe").feed(simulated_body("pipe", 1), final=True)
    assert tuple(row) == FEED_FIELDS


async def test_old_style_cr_line_ends_are_read_too() -> None:
    body = f"{HEADER}\r1,812,2024-04-05 22:11:12,1,1\r2,812,2024-04-05 22:11:12,1,1\r".encode()
    assert [row["ID"] for row in await rows_of(body, piece=4)] == ["1", "2"]
