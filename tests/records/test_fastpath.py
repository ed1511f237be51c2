"""The fast path publishes byte for byte what the checked path publishes, and takes the common row."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import cycle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr_stream.answers.formats import ANSWER_FORMATS, AnswerFormat
from cdr_stream.answers.parse import answer_row_chunks
from cdr_stream.records import fastpath
from cdr_stream.records.fastpath import MEMO_LIMIT, FastNormalizer, latest_micros
from cdr_stream.records.processor import FUTURE_TOLERANCE, ProcessedChunk, RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.formats import NumbersAs, RowCache, framing
from tests.native import TURNED_OFF
from tests.properties import assert_same_outcome, run_now
from tests.rows import as_strings, feed_row
from tests.strategies import SUITE_SETTINGS, floors, plain_rows, row_lists, valid_rows

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LATEST_US = latest_micros(NOW + FUTURE_TOLERANCE)


def both_paths(rows: list[Any], floor: int = 0, *, native: bool = True) -> tuple[ProcessedChunk, ProcessedChunk]:
    fast = RecordProcessor("hero-nz", clock=lambda: NOW, native=native).process_chunk(rows, floor)
    checked = RecordProcessor("hero-nz", clock=lambda: NOW, fast_path=False).process_chunk(rows, floor)
    return fast, checked


def assert_same_output(rows: list[Any], floor: int = 0) -> ProcessedChunk:
    """The fast path in C (where it is built) and in Python each give what the checked path gives."""
    for native in (False,) if TURNED_OFF else (False, True):
        fast = assert_same_as_checked(rows, floor, native=native)
    return fast


def assert_same_as_checked(rows: list[Any], floor: int, *, native: bool) -> ProcessedChunk:
    fast, checked = both_paths(rows, floor, native=native)
    assert_same_outcome(fast, checked)
    return fast


def rows_the_fast_path_takes(rows: list[dict[str, Any]], *, native: bool = True) -> int:
    fast = FastNormalizer("hero-nz", use_native=native)
    return sum(1 for number, row in enumerate(rows, 1) if fast.event(number, row, LATEST_US) is not None)


# --- generated rows -----------------------------------------------------------------------------


@settings(SUITE_SETTINGS, max_examples=400)
@given(row_lists(), floors)
def test_any_rows_give_the_same_events_and_dead_letters_on_both_paths(rows: list[Any], floor: int) -> None:
    assert_same_output(rows, floor)


@settings(SUITE_SETTINGS, max_examples=300)
@given(st.lists(valid_rows() | plain_rows, max_size=12))
def test_valid_rows_with_php_forms_give_the_same_events_on_both_paths(rows: list[dict[str, Any]]) -> None:
    assert_same_output(rows)


@settings(SUITE_SETTINGS, max_examples=200)
@given(st.lists(plain_rows, max_size=8))
def test_rows_with_numbers_as_strings_give_the_same_events_on_both_paths(rows: list[dict[str, Any]]) -> None:
    assert_same_output([as_strings(row) for row in rows])


def simulated_rows(fmt: AnswerFormat, numbers_as: NumbersAs, count: int, **rates: float) -> list[Any]:
    """`count` simulated rows as the connector parses them from one answer in `fmt`."""
    generator = FeedGenerator(GeneratorConfig(seed=14, span_records=count, **rates))
    frame = framing(fmt)
    rendered = RowCache(generator, numbers_as).rows(range(1, count + 1), fmt)
    body = frame.opening + frame.separator.join(rendered) + frame.closing
    position, sizes = 0, cycle((65536, 1000, 7))

    async def read(size: int) -> bytes:
        nonlocal position
        piece = body[position : position + min(size, next(sizes))]
        position += len(piece)
        return piece

    async def collect() -> list[Any]:
        return [row async for chunk in answer_row_chunks(read, fmt=fmt, chunk_rows=1000) for row in chunk]

    return run_now(collect())


# Every answer format, and JSON with its numbers as strings too (a text format writes every value as text).
ANSWERS: list[tuple[AnswerFormat, NumbersAs]] = [(fmt, "number") for fmt in ANSWER_FORMATS] + [("json", "string")]
PHP_FORMS = {
    "account_fee_rate": 0.05,
    "credit_rate": 0.05,
    "zero_bill_date_rate": 0.1,
    "whole_float_rate": 0.1,
    "offset_spelling_rate": 0.1,
}


@pytest.mark.parametrize(("fmt", "numbers_as"), ANSWERS)
def test_simulated_rows_with_php_forms_and_invalid_rows_give_the_same_output(
    fmt: AnswerFormat, numbers_as: NumbersAs
) -> None:
    rows = simulated_rows(fmt, numbers_as, 3000, invalid_rate=0.05, **PHP_FORMS)
    chunk = assert_same_output(rows)
    assert chunk.dead_letters, "the invalid rows are dead letters on both paths"
    assert len(chunk.events) + len(chunk.dead_letters) == 3000


@pytest.mark.parametrize(("fmt", "numbers_as"), ANSWERS)
def test_the_fast_path_takes_every_valid_simulated_row_php_forms_included(
    fmt: AnswerFormat, numbers_as: NumbersAs
) -> None:
    rows = simulated_rows(fmt, numbers_as, 2000, **PHP_FORMS)
    assert rows_the_fast_path_takes(rows, native=False) == len(rows)
    if not TURNED_OFF:
        assert rows_the_fast_path_takes(rows) == len(rows)


# --- what the fast path leaves to the checked path ----------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"Charge": True},  # equal to 1 and 1.0: a boolean is no amount
        {"UTCOffset": True},
        {"Seconds": True},
        {"Seconds": "60.0"},  # PHP's whole float
        {"Seconds": 60.0, "FreeUnitsUsed": 60.0},
        {"Seconds": "60.0000000000000", "FreeUnitsUsed": "60.0000000000000"},  # 13 zeros: not a units value
        {"Seconds": 1e20, "FreeUnitsUsed": 1e20},
        {"Seconds": -(2.0**63), "FreeUnitsUsed": 2.0**63},
        {"FreeUnitsUsed": 1.5},
        {"Seconds": "\u00b2"},
        {"Seconds": 2**63},
        {"AccountCode": "\ufeff"},  # blank to the schema, not to str.strip()
        {"AccountCode": "\x1c"},  # blank to str.strip(), not to the schema
        {"Time": "24:00:00"},
        {"Time": "12:60"},
        {"Date": "2024-02-30"},
        {"BillDate": "0000-00-00"},
        {"UTCDateTime": "2024-02-30 10:00:00"},
        {"UTCDateTime": "2024-01-01 24:00:00"},
        {"UTCDateTime": "2024-01-01t10:00:00"},
        {"UTCDateTime": "2024-06-01 12:15:01"},  # a second past the future tolerance
        {"UTCDateTime": "2024-06-01 12:15:00"},  # exactly at it
        {"Charge": 1e16},
        {"Charge": -0.0},
        {"Charge": " 1.50 "},
        {"Charge": "+1.5"},
        {"UTCOffset": "+12:45"},
        {"UTCOffset": 24},
        {"UTCOffset": 12.75},
        {"Direction": 0},
        {"CallType": 0.0},
        {"CallType": False},
        {"Extra": "x"},
    ],
)
def test_edge_values_give_the_same_output(change: dict[str, Any]) -> None:
    assert_same_output([feed_row(1), feed_row(2, **change), feed_row(3)])


def test_a_missing_descriptive_field_is_left_to_the_checked_path() -> None:
    row = feed_row(5)
    del row["Status"]
    assert FastNormalizer("f").event(5, row, LATEST_US) is None
    assert_same_output([row])


def test_the_memos_stay_within_their_limit() -> None:
    rows = [feed_row(n, Date=f"{2000 + n // 365:04d}-01-01", Charge=n + 0.25) for n in range(1, 2 * MEMO_LIMIT)]
    events = FastNormalizer("f")
    for number, row in enumerate(rows, 1):
        assert events.event(number, row, LATEST_US) is not None
    assert len(fastpath._AMOUNT_TEXTS) <= MEMO_LIMIT
    assert len(fastpath._date_text.known) <= MEMO_LIMIT
