"""The page reader (`cdr_stream.records.page`, in C): a JSON page's rows, prepared where they take the common
form, give byte for byte the events and dead letters the checked path gives on orjson's rows; a page orjson
refuses is left to orjson."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr_stream.records.event import PreparedRow
from cdr_stream.records.page import prepared_rows
from cdr_stream.records.processor import RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.formats import NumbersAs, RowCache, framing
from tests.native import needs_native
from tests.properties import assert_same_outcome
from tests.records.test_fastpath import PHP_FORMS
from tests.rows import feed_row
from tests.strategies import SUITE_SETTINGS, mutated_rows, plain_rows, valid_rows

pytestmark = needs_native

PAST = "2024-01-02 03:04:05"


def simulated_page(count: int, numbers_as: NumbersAs, **rates: float) -> bytes:
    generator = FeedGenerator(GeneratorConfig(seed=14, span_records=count, **rates))
    frame = framing("json")
    rendered = RowCache(generator, numbers_as).rows(range(1, count + 1), "json")
    return frame.opening + frame.separator.join(rendered) + frame.closing


def assert_same_as_checked(page: bytes, *, native: bool = True) -> list[Any]:
    """The page's prepared rows give what orjson's rows give on the checked path; returns them."""
    rows = prepared_rows(page)
    assert rows is not None
    loaded = orjson.loads(page)
    assert len(rows) == len(loaded)
    for row, plain in zip(rows, loaded, strict=True):
        assert row.__class__ is PreparedRow or row == plain  # what is not prepared is orjson's row
    # This host's clock on both sides: the reader leaves a row ahead of it to the checked path.
    fast = RecordProcessor("hero-nz", native=native).process_chunk(rows, 0)
    checked = RecordProcessor("hero-nz", fast_path=False).process_chunk(loaded, 0)
    assert_same_outcome(fast, checked)
    return rows


def prepared_count(rows: list[Any]) -> int:
    return sum(1 for row in rows if row.__class__ is PreparedRow)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(("numbers_as", "rates"), [("number", {}), ("string", PHP_FORMS), ("number", PHP_FORMS)])
def test_simulated_pages_are_prepared_and_give_the_same_output(
    numbers_as: NumbersAs, rates: dict[str, float], native: bool
) -> None:
    rows = assert_same_as_checked(simulated_page(3000, numbers_as, **rates), native=native)
    assert prepared_count(rows) == len(rows), "every simulated row, PHP forms included, is prepared"


def test_invalid_simulated_rows_are_left_as_dicts_and_dead_lettered_the_same() -> None:
    rows = assert_same_as_checked(simulated_page(3000, "number", invalid_rate=0.1))
    assert 0 < prepared_count(rows) < len(rows)


def in_the_past(row: Any, past: bool) -> Any:
    if past and isinstance(row, dict) and "UTCDateTime" in row:
        row["UTCDateTime"] = PAST
    return row


past_rows = st.builds(in_the_past, valid_rows() | plain_rows | mutated_rows(deep=False), st.booleans())


@st.composite
def common_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A common row with up to four of its values taken from a generated row (valid, in PHP's forms or
    mutated): mostly rows the reader prepares, each with a few odd values in it."""
    row = feed_row(draw(st.integers(1, 50)), UTCDateTime=PAST)
    other = draw(valid_rows() | plain_rows | mutated_rows(deep=False))
    for name in draw(st.lists(st.sampled_from(sorted(other)), max_size=4, unique=True)):
        row[name] = other[name]
    return row


@settings(SUITE_SETTINGS, max_examples=400)
@given(st.lists(past_rows | common_rows(), max_size=8), st.booleans())
def test_generated_rows_give_the_same_output(rows: list[Any], escaped: bool) -> None:
    # orjson writes UTF-8 and escapes only what it must; json escapes every non-ASCII character as \uXXXX.
    page = json.dumps(rows, indent=1).encode() if escaped else orjson.dumps(rows)
    assert_same_as_checked(page)


def test_valid_rows_with_text_to_escape_are_prepared() -> None:
    text = 'say "hi"\t\\ /\u00e9\u4e2d\x01'
    rows = [feed_row(1, UTCDateTime=PAST, TextDesc1=text, Direction=" InBound\n", Profile="\u00e9")]
    for page in (orjson.dumps(rows), json.dumps(rows).encode()):
        assert prepared_count(assert_same_as_checked(page)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"UTCOffset": "+12:45"},
        {"UTCOffset": " -5:30 "},
        {"UTCOffset": "12.75"},
        {"UTCOffset": 12.75},
        {"UTCOffset": "+13"},
        {"UTCOffset": "-0"},
        {"UTCOffset": "+-5"},
        {"UTCOffset": "12:60"},
        {"Seconds": "60.0", "NetworkSeconds": 60.0, "ConnectSeconds": -0.0, "FreeUnitsUsed": "007"},
        {"Seconds": 1e15, "FreeUnitsUsed": "123456789012345678.000"},
        {"Charge": "-0.00", "ChargeExcl": "007.50"},
        {"Charge": 0.1, "ChargeExcl": 1e-05},
        {"Charge": 123456789012345.6, "ChargeExcl": 1234567890123456.7},
        {"Charge": -0.0, "ChargeExcl": 100},
        {"ID": "0042"},
        {"ID": " 42"},
        {"AccountCode": " 81234567 "},
        {"AccountCode": 81234567},
        {"BillDate": "0000-00-00", "Date": "0000-00-00 00:00:00"},
        {"Date": "2024-02-30"},
        {"Time": "", "BParty": None, "AParty": 6421234567},
        {"TextDesc2": "\u2003padded\u2003"},
        {"TextDesc2": "\U0001f4de call"},  # json.dumps writes a surrogate pair
        {"UTCDateTime": "2024-01-02T03:04:05"},
        {"UTCDateTime": "2999-01-02 03:04:05"},
    ],
)
def test_edge_values_give_the_same_output(change: dict[str, Any]) -> None:
    rows = [feed_row(1, UTCDateTime=PAST), feed_row(2, UTCDateTime=PAST) | change, feed_row(3, UTCDateTime=PAST)]
    for page in (orjson.dumps(rows), json.dumps(rows, indent=2).encode()):
        assert prepared_count(assert_same_as_checked(page)) >= 2


def test_keys_in_another_order_are_prepared_and_other_layouts_are_left_to_orjson() -> None:
    row = feed_row(1, UTCDateTime=PAST)
    shuffled = dict(reversed(list(row.items())))
    extra = row | {"Extra": "x"}
    missing = {name: value for name, value in row.items() if name != "Status"}
    page = b"[%s,%s,%s,%s]" % (
        orjson.dumps(shuffled),
        orjson.dumps(extra),
        orjson.dumps(missing),
        orjson.dumps(row).replace(b'"Status":"Ok"', b'"Status":"Ok","Status":"Bad"'),
    )
    rows = assert_same_as_checked(page)
    assert [row.__class__ for row in rows] == [PreparedRow, dict, dict, dict]


@pytest.mark.parametrize(
    "page",
    [
        b"",
        b"[",
        b"[1,]",
        b"[,1]",
        b'[{"ID":1}',
        b'[{"ID":1,}]',
        b'[{"ID" 1}]',
        b"[] x",
        b"[][]",
        b"[01]",
        b"[1.]",
        b"[-]",
        b"[.5]",
        b"[1e]",
        b"[tru]",
        b"[nul]",
        b'["\\x"]',
        b'["\\u12"]',
        b'["a\x01"]',
        b'["\xff"]',
        b'["\xc0\x80"]',  # an overlong encoding
        b'["\xed\xa0\x80"]',  # a surrogate in UTF-8
        b'["\xf4\x90\x80\x80"]',  # beyond U+10FFFF
        b'["\xe2\x82"]',  # cut short
        b'["\\ud800"]',  # a lone surrogate escape
        b"[\x0b]",
    ],
)
def test_a_page_orjson_refuses_is_left_to_orjson(page: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(page)
    assert prepared_rows(page) is None


def test_a_page_nested_deeper_than_the_reader_follows_is_left_to_orjson() -> None:
    page = b"[" + b"[" * 100 + b"]" * 100 + b"]"
    assert prepared_rows(page) is None
    assert orjson.loads(page)


def test_plain_pages_it_reads_whole() -> None:
    assert prepared_rows(b" [ ] \n") == []
    assert prepared_rows(b'[1, "two", null, true, [3], {"ID": 4}]') == [1, "two", None, True, [3], {"ID": 4}]
