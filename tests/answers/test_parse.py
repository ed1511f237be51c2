from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from cdr_stream.answers.parse import AnswerFormat, answer_row_chunks, json_row_chunks
from cdr_stream.errors import AnswerFormatError
from cdr_stream.records.event import PreparedRow
from cdr_stream.records.processor import RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import write_cdr_files
from cdr_stream.simulator.formats import RowCache, framing
from tests.native import needs_native
from tests.properties import SUITE_TALLY, assert_same_outcome, check_body
from tests.rows import FILE_FORMATS
from tests.strategies import SUITE_SETTINGS, Body, bodies


def reader(body: bytes, piece: int = 7) -> Callable[[int], Awaitable[bytes]]:
    position = 0

    async def read(size: int) -> bytes:
        nonlocal position
        data = body[position : position + min(size, piece)]
        position += len(data)
        return data

    return read


async def collect(body: bytes, *, chunk_rows: int = 2, buffer_limit: int = 1 << 20) -> list[list[Any]]:
    return [chunk async for chunk in json_row_chunks(reader(body), chunk_rows=chunk_rows, buffer_limit=buffer_limit)]


ROWS = [{"ID": i, "Charge": 0.1 * i, "Text": 'a,b"c'} for i in range(1, 6)]


@pytest.mark.parametrize("buffer_limit", [1 << 20, 16])
async def test_rows_come_in_chunks_whether_buffered_or_streamed(buffer_limit: int) -> None:
    chunks = await collect(json.dumps(ROWS).encode(), buffer_limit=buffer_limit)
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert [row for chunk in chunks for row in chunk] == ROWS


@pytest.mark.parametrize("body", [b"", b"  \r\n", b"[]", b" [ ] "])
async def test_empty_answers_have_no_rows(body: bytes) -> None:
    assert await collect(body) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!DOCTYPE html><html><body>Error</body></html>", "not_json_array"),
        (b'{"error": "bad"}', "not_json_array"),
        (b'[{"ID": 1}, {"ID": 2', "invalid_json"),
        (b"Error: invalid login", "not_json_array"),
    ],
)
async def test_garbage_is_an_answer_format_error(body: bytes, reason: str) -> None:
    with pytest.raises(AnswerFormatError) as caught:
        await collect(body)
    assert caught.value.reason == reason


async def test_a_truncated_streamed_answer_fails_after_the_complete_chunks() -> None:
    body = json.dumps(ROWS).encode()[:-30]
    seen: list[list[Any]] = []

    async def read_all() -> None:
        async for chunk in json_row_chunks(reader(body), chunk_rows=2, buffer_limit=16):
            seen.append(chunk)

    with pytest.raises(AnswerFormatError):
        await read_all()
    assert [row["ID"] for chunk in seen for row in chunk] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("json", b'[{"ID": 5, "AccountCode": "812"}]'),
        ("csv", b"ID,AccountCode,UTCDateTime,Charge,ChargeExcl\n5,812,,,\n"),
        ("txt", b"ID\tAccountCode\tUTCDateTime\tCharge\tChargeExcl\n5\t812\t\t\t\n"),
        ("pipe", b"ID|AccountCode|UTCDateTime|Charge|ChargeExcl\n5|812|||\n"),
    ],
)
async def test_answer_row_chunks_reads_each_format(fmt: AnswerFormat, body: bytes) -> None:
    rows = [row async for chunk in answer_row_chunks(reader(body), fmt=fmt, chunk_rows=10) for row in chunk]
    assert [(str(row["ID"]), row["AccountCode"]) for row in rows] == [("5", "812")]


@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe"])
async def test_a_json_body_is_not_taken_for_a_text_one(fmt: AnswerFormat) -> None:
    with pytest.raises(AnswerFormatError) as caught:
        async for _ in answer_row_chunks(reader(json.dumps(ROWS).encode()), fmt=fmt, chunk_rows=10):
            pass
    assert caught.value.reason == "missing_header"


# --- regressions found by the property tests -------------------------------------------------------


@pytest.mark.parametrize("buffer_limit", [1 << 20, 4])
async def test_a_leading_byte_order_mark_is_ignored(buffer_limit: int) -> None:
    # Some PHP scripts send one first (a source file saved with it); JSON lets a parser ignore it.
    body = b"\xef\xbb\xbf" + json.dumps(ROWS).encode()
    chunks = await collect(body, buffer_limit=buffer_limit)
    assert [row for chunk in chunks for row in chunk] == ROWS
    assert await collect(b"\xef\xbb\xbf  ", buffer_limit=buffer_limit) == []


@pytest.mark.parametrize("body", [b" " * 100 + b'[{"ID": 1}]', b"\r\n" * 50, b"\t" * 100 + b"[]"])
async def test_whitespace_longer_than_the_buffer_reads_as_without_it(body: bytes) -> None:
    # The streamed path took 16 bytes of whitespace for the whole opening and refused the answer.
    assert await collect(body, buffer_limit=16) == await collect(body)


async def test_bytes_that_are_not_utf8_in_a_streamed_answer_are_an_answer_format_error() -> None:
    # ijson raised UnicodeDecodeError, which nothing caught: the feed's task died.
    body = b'[{"ID": 1, "Note": "caf\xc0"}, ' + b" " * 64 + b'{"ID": 2}]'
    with pytest.raises(AnswerFormatError) as caught:
        await collect(body, buffer_limit=16)
    assert caught.value.reason == "invalid_json"


# --- properties ------------------------------------------------------------------------------------
# 1,000 bodies (a few rows each, all of them processed too), read both ways in arbitrary pieces: see
# tests/test_records.py for how the example counts were chosen.


@settings(SUITE_SETTINGS, max_examples=1000)
@given(bodies())
def test_a_body_gives_rows_or_an_answer_format_error_the_same_on_both_paths(body: Body) -> None:
    check_body(body, SUITE_TALLY)


@pytest.mark.parametrize("body", [b"[]\x0b", b'[{"ID": 1},\x0c{"ID": 2}]', b'[{"ID": 1}\x0b]'])
async def test_a_vertical_tab_or_form_feed_is_refused_on_both_paths(body: bytes) -> None:
    # yajl skipped them as whitespace, so the streamed path read what orjson refused (found by dev/fuzz.py).
    for buffer_limit in (1 << 20, 0):
        with pytest.raises(AnswerFormatError) as caught:
            await collect(body, buffer_limit=buffer_limit)
        assert caught.value.reason == "invalid_json"


async def test_both_paths_keep_the_answers_order_for_the_sort_that_follows() -> None:
    shuffled = json.dumps([{"ID": i} for i in (4, 1, 5, 3, 2)]).encode()

    async def ids(buffer_limit: int) -> list[list[int]]:
        chunks = json_row_chunks(reader(shuffled), chunk_rows=2, buffer_limit=buffer_limit)
        return [[row["ID"] for row in chunk] async for chunk in chunks]

    assert await ids(1 << 20) == await ids(16) == [[4, 1], [5, 3], [2]]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_a_cdr_file_is_parsed_in_its_format_in_chunks_from_small_reads(tmp_path: Path, fmt: str) -> None:
    generator = FeedGenerator(GeneratorConfig(seed=2, window_days=1.0, span_records=250))
    (file,) = write_cdr_files(tmp_path, generator, range(1, 251), fmt=fmt, period="daily")
    content = file.path.read_bytes()
    position = 0

    async def read(size: int) -> bytes:
        nonlocal position
        piece = content[position : position + min(size, 1000)]  # small reads, as over a slow link
        position += len(piece)
        return piece

    chunks = [chunk async for chunk in answer_row_chunks(read, fmt=fmt, chunk_rows=100)]
    assert [len(chunk) for chunk in chunks] == [100, 100, 50]
    rows = [row for chunk in chunks for row in chunk]
    expected = orjson.loads(orjson.dumps([generator.row(i) for i in range(1, 251)], default=str))
    assert [str(row["ID"]) for row in rows] == [str(row["ID"]) for row in expected]
    assert [str(row["AccountCode"]) for row in rows] == [row["AccountCode"] for row in expected]


# --- the page reader on a streamed answer ------------------------------------------------------------


async def scanned(body: bytes, *, piece: int, buffer_limit: int) -> list[Any]:
    chunks = json_row_chunks(reader(body, piece), chunk_rows=500, buffer_limit=buffer_limit, prepare=True)
    return [row async for chunk in chunks for row in chunk]


def simulated_body(count: int, **rates: float) -> bytes:
    generator = FeedGenerator(GeneratorConfig(seed=3, span_records=count, **rates))
    frame = framing("json")
    return (
        frame.opening
        + frame.separator.join(RowCache(generator, "string").rows(range(1, count + 1), "json"))
        + (frame.closing)
    )


@needs_native
@pytest.mark.parametrize(("piece", "buffer_limit"), [(7, 100), (1000, 4096), (65536, 1 << 16)])
async def test_a_streamed_answer_is_read_into_prepared_rows_piece_by_piece(piece: int, buffer_limit: int) -> None:
    body = simulated_body(2000, invalid_rate=0.05)
    rows = await scanned(body, piece=piece, buffer_limit=buffer_limit)
    assert len(rows) == 2000
    assert sum(1 for row in rows if row.__class__ is PreparedRow) > 1800
    fast = RecordProcessor("f").process_chunk(rows, 0)
    checked = RecordProcessor("f", fast_path=False).process_chunk(orjson.loads(body), 0)
    assert_same_outcome(fast, checked)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda body: body.replace(b'"ID":"1500"', b'"ID":"1500"x'), "invalid_json"),  # mid-answer
        (lambda body: body[:-1000], "invalid_json"),  # cut short
        (lambda body: body + b" [1]", "invalid_json"),  # more after the array
    ],
)
async def test_a_streamed_answer_that_breaks_is_refused_as_ijson_refuses_it(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    body = damage(simulated_body(2000))
    for prepare in (True, False):
        chunks = json_row_chunks(reader(body, 4096), chunk_rows=500, buffer_limit=4096, prepare=prepare)
        with pytest.raises(AnswerFormatError) as caught:
            _ = [row async for chunk in chunks for row in chunk]
        assert caught.value.reason == reason


async def test_a_streamed_row_the_reader_does_not_follow_is_read_by_ijson() -> None:
    deep = {"ID": 2, "Extra": json.loads("[" * 80 + "]" * 80)}
    body = json.dumps([{"ID": 1}, deep, {"ID": 3}]).encode()
    rows = await scanned(body, piece=10, buffer_limit=16)
    assert [row["ID"] for row in rows] == [1, 2, 3]
    assert rows[1] == deep
