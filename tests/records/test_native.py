"""The C fast path (`cdr_stream/records/_native.c`): built from the source beside it, and giving byte for byte
the event the Python fast path gives (which `test_fastpath` compares with the checked path)."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr_stream.records import fastpath
from cdr_stream.records.fastpath import FastNormalizer
from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.records.processor import RecordProcessor
from tests.native import assert_built_from_sources, needs_native
from tests.records.test_fastpath import LATEST_US, PHP_FORMS, simulated_rows
from tests.rows import feed_row
from tests.strategies import SUITE_SETTINGS, plain_rows, valid_rows

TEXT_FIELDS = ("AParty", "BParty", "BillNumber", "CallType", "TextDesc1", "TextDesc2", "Status", "Profile")


def test_the_extension_is_built_from_the_source_beside_it() -> None:
    assert_built_from_sources(fastpath.native, Path(fastpath.__file__).parent, "_native")


def both(row: dict[str, Any], row_id: int = 7, feed: str = "hero-nz") -> tuple[Any, Any]:
    native = FastNormalizer(feed).event(row_id, row, LATEST_US)
    python = FastNormalizer(feed, use_native=False).event(row_id, row, LATEST_US)
    return native, python


def assert_same(row: dict[str, Any], *, taken: bool = True, feed: str = "hero-nz") -> None:
    native, python = both(row, feed=feed)
    if taken:
        assert native is not None
    if native is not None:
        assert native == python  # id, key, timestamp, value bytes and labels
        assert type(native) is type(python)


@needs_native
@pytest.mark.parametrize(("fmt", "numbers_as"), [("json", "number"), ("json", "string"), ("csv", "number")])
def test_simulated_rows_give_the_same_events(fmt: Any, numbers_as: Any) -> None:
    rows = simulated_rows(fmt, numbers_as, 3000, **PHP_FORMS)
    for row in rows:
        assert_same(row)


@needs_native
@settings(SUITE_SETTINGS, max_examples=300)
@given(valid_rows() | plain_rows)
def test_generated_rows_give_the_same_event_or_go_on(row: dict[str, Any]) -> None:
    assert_same(row, taken=False)


@needs_native
@pytest.mark.parametrize("code", range(128))
def test_each_ascii_character_is_escaped_as_orjson_escapes_it(code: int) -> None:
    character = chr(code)
    assert_same(feed_row(3, TextDesc1=f"a{character}b", Profile=f"{character}x{character}", Status=character * 3))


@needs_native
@pytest.mark.parametrize("text", ["Café", "東京", "line\u2028separator", "emoji \U0001f4de", "ÿ", "a\u00a0b", "\x7f"])
def test_non_ascii_text_is_written_as_utf8(text: str) -> None:
    assert_same(feed_row(3, TextDesc2=text, AParty=text, Direction="Inbound"))


@needs_native
@settings(SUITE_SETTINGS, max_examples=300)
@given(st.sampled_from(TEXT_FIELDS), st.text(max_size=20))
def test_any_text_gives_the_same_event_or_goes_on(field: str, text: str) -> None:
    assert_same(feed_row(3, **{field: text}), taken=False)


@needs_native
@pytest.mark.parametrize(
    "change",
    [
        {"TextDesc1": " \u2003padded\u2003 "},  # Unicode spaces: stripped on the checked path
        {"TextDesc1": "\ud800"},  # a lone surrogate: orjson refuses it
        {"Direction": "ÉNTRANT"},  # Unicode case rules
        {"AccountCode": 123},  # an int code's text is made on the checked path
        {"UTCOffset": 12.75},
        {"Seconds": "60.0"},
    ],
)
def test_forms_left_to_the_other_paths_still_give_the_same_output(change: dict[str, Any]) -> None:
    assert_same(feed_row(3, **change), taken=False)


@needs_native
def test_a_feed_name_is_escaped_in_the_event() -> None:
    assert_same(feed_row(3), feed='b"ill\\ing-é')


@needs_native
def test_keys_in_another_order_or_as_new_objects_give_the_same_event() -> None:
    row = feed_row(9)
    assert_same(row)
    names = list(row)
    random.Random(14).shuffle(names)
    assert_same({name: row[name] for name in names})
    # Fresh key objects (as ijson makes them), equal to the ones met before.
    assert_same({"".join(list(name)): value for name, value in row.items()})
    assert_same(row)


@needs_native
def test_a_missing_field_with_an_extra_one_is_left_to_the_checked_path() -> None:
    row = feed_row(9)
    del row["Status"]
    row["Extra"] = "x"
    assert len(row) == len(FEED_FIELDS)
    native, python = both(row)
    assert native is None and python is None


@needs_native
def test_no_reference_is_kept_or_lost() -> None:
    rows = [
        feed_row(1),
        feed_row(2, Charge="0.0150", Date="2024-03-01", Seconds="60"),  # memo reads through Python readers
        feed_row(3, UTCDateTime="2024-02-30 10:00:00"),  # given up after the values were taken
        {**feed_row(4), "Extra": "x"},
        dict(reversed(feed_row(5).items())),
    ]
    normalizer = FastNormalizer("hero-nz")
    for row in rows:  # once, for the memos
        normalizer.event(1, row, LATEST_US)
    # Small ints are shared with everything (these counts among them): only the row's own objects are counted.
    owned = [*rows, *(value for row in rows for value in row.values() if value.__class__ is not int)]
    before = [sys.getrefcount(item) for item in owned]
    for _ in range(1000):
        for row in rows:
            normalizer.event(1, row, LATEST_US)
    assert [sys.getrefcount(item) for item in owned] == before


@needs_native
@pytest.mark.parametrize(
    "latest", [None, datetime(2024, 4, 5, 22, 11, 11, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]
)
def test_normalize_with_any_latest_moment_gives_the_same_outcome(latest: datetime | None) -> None:
    # Without `latest` the limit is 2**63 us, beyond a C long long: no limit, as in Python.
    row = feed_row(3)
    native = RecordProcessor("f").normalize(3, row, latest)
    assert native == RecordProcessor("f", native=False).normalize(3, row, latest)
    assert native == RecordProcessor("f", fast_path=False).normalize(3, row, latest)
