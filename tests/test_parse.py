from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cdr_stream.parse import AnswerFormatError, json_row_chunks


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


async def test_an_answer_parsed_whole_is_sorted_before_it_is_cut_but_a_streamed_one_is_not() -> None:
    shuffled = json.dumps([{"ID": i} for i in (4, 1, 5, 3, 2)]).encode()

    async def ids(buffer_limit: int) -> list[list[int]]:
        chunks = json_row_chunks(reader(shuffled), chunk_rows=2, buffer_limit=buffer_limit, order=lambda r: r["ID"])
        return [[row["ID"] for row in chunk] async for chunk in chunks]

    assert await ids(1 << 20) == [[1, 2], [3, 4], [5]]
    assert await ids(16) == [[4, 1], [5, 3], [2]]  # bounded memory: the feed's own order
