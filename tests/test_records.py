from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import orjson
import pytest

from cdr_stream.fields import FEED_FIELDS
from cdr_stream.records import (
    EVENT_SCHEMA_FILE,
    ROW_SCHEMA_FILE,
    RULE_INVALID_FIELD,
    RULE_INVALID_VALUE,
    RULE_MISSING_FIELD,
    RULE_NOT_AN_OBJECT,
    RULE_POINTER_ROW,
    RecordProcessor,
    load_schema,
)
from tests.rows import as_strings, feed_row

event_validator = jsonschema_rs.validator_for(load_schema(EVENT_SCHEMA_FILE))


def events_of(rows: list[Any], floor: int = 0) -> list[dict[str, Any]]:
    chunk = RecordProcessor("hero-nz").process_chunk(rows, floor)
    return [orjson.loads(event.value) for event in chunk.events]


def dead_letters_of(rows: list[Any], floor: int = 0) -> list[dict[str, Any]]:
    chunk = RecordProcessor("hero-nz").process_chunk(rows, floor)
    return [orjson.loads(letter.value) for letter in chunk.dead_letters]


def test_row_schema_lists_the_26_fields_in_order() -> None:
    assert tuple(load_schema(ROW_SCHEMA_FILE)["properties"]) == FEED_FIELDS
    assert len(FEED_FIELDS) == 26


def test_a_valid_row_becomes_an_event_that_matches_the_event_schema() -> None:
    (event,) = events_of([feed_row(7)])
    event_validator.validate(event)
    assert event["id"] == 7
    assert event["feed"] == "hero-nz"
    assert event["schema_version"] == 1
    assert event["account_code"] == "81234567"
    assert event["direction"] == "outbound"
    assert event["utc_datetime"] == "2024-04-05T22:11:12Z"
    assert event["charge"] == "0.4485"
    assert event["charge_excl"] == "0.39"
    assert event["seconds"] == 60


def test_event_key_and_timestamp() -> None:
    chunk = RecordProcessor("f").process_chunk([feed_row(1, UTCDateTime="2024-01-01T00:00:01Z")], 0)
    (event,) = chunk.events
    assert event.key == b"81234567"
    assert event.timestamp_ms == 1704067201000


def test_number_typed_and_string_typed_rows_give_the_same_event() -> None:
    rows = [feed_row(1), feed_row(2, Charge=1.15, ChargeExcl=1.0, UTCOffset=13.0, Seconds=0)]
    assert events_of(rows) == events_of([as_strings(row) for row in rows])


@pytest.mark.parametrize(
    ("sent", "published"),
    [
        (0.23, "0.23"),
        ("0.2300", "0.23"),
        (100, "100"),
        ("100.00", "100"),
        (1e-05, "0.00001"),
        ("-0.50", "-0.5"),
        ("0", "0"),
        (12345678.1234, "12345678.1234"),
    ],
)
def test_money_is_an_exact_canonical_decimal_string(sent: Any, published: str) -> None:
    (event,) = events_of([feed_row(1, Charge=sent)])
    assert event["charge"] == published


@pytest.mark.parametrize(
    "utc", ["2024-04-05 22:11:12", "2024-04-05T22:11:12", "2024-04-05T22:11:12Z", "2024-04-06T10:11:12+12:00"]
)
def test_utc_datetime_forms_are_read_as_utc(utc: str) -> None:
    (event,) = events_of([feed_row(1, UTCDateTime=utc)])
    assert event["utc_datetime"] == "2024-04-05T22:11:12Z"


def test_empty_optional_fields_become_null_and_extra_columns_are_kept() -> None:
    (event,) = events_of([feed_row(1, BParty="", Seconds="", BillDate=None, Rate="0.1")])
    assert event["b_party"] is None
    assert event["seconds"] is None
    assert event["bill_date"] is None
    assert event["extra"] == {"Rate": "0.1"}
    event_validator.validate(event)


@pytest.mark.parametrize(
    ("change", "rule", "field"),
    [
        ({"AccountCode": None}, RULE_INVALID_FIELD, "AccountCode"),
        ({"Seconds": "12x"}, RULE_INVALID_FIELD, "Seconds"),
        ({"Charge": "one dollar"}, RULE_INVALID_FIELD, "Charge"),
        ({"UTCDateTime": "31/02/2024 25:00"}, RULE_INVALID_FIELD, "UTCDateTime"),
        ({"Date": "2024-02-31"}, RULE_INVALID_VALUE, "Date"),
        ({"Time": "24:10:00"}, RULE_INVALID_VALUE, "Time"),
        ({"AParty": "", "BParty": ""}, RULE_POINTER_ROW, None),
    ],
)
def test_an_invalid_row_is_dead_lettered_with_its_rule_and_field(
    change: dict[str, Any], rule: str, field: str | None
) -> None:
    (letter,) = dead_letters_of([feed_row(5, **change)])
    assert letter["id"] == 5
    assert letter["rule"] == rule
    assert letter["field"] == field
    assert letter["raw"]["ID"] == 5
    if field:
        assert letter["reason"].startswith(field)


def test_a_missing_required_field_is_named() -> None:
    row = feed_row(5)
    del row["ChargeExcl"]
    (letter,) = dead_letters_of([row])
    assert (letter["rule"], letter["field"]) == (RULE_MISSING_FIELD, "ChargeExcl")
    assert "ChargeExcl" in letter["reason"]


def test_rows_without_a_usable_id_are_dead_lettered_and_do_not_move_the_offset() -> None:
    chunk = RecordProcessor("f").process_chunk([feed_row("abc"), feed_row(0), ["not", "a", "row"]], 10)
    assert [letter.id for letter in chunk.dead_letters] == [None, None, None]
    assert [letter.rule for letter in chunk.dead_letters] == [
        RULE_INVALID_FIELD,
        RULE_INVALID_FIELD,
        RULE_NOT_AN_OBJECT,
    ]
    assert chunk.max_id is None


def test_ids_at_or_below_the_floor_are_dropped_and_counted() -> None:
    chunk = RecordProcessor("f").process_chunk([feed_row(i) for i in (9, 10, 11, 12)], 10)
    assert [event.id for event in chunk.events] == [11, 12]
    assert chunk.dropped_seen == 2
    assert chunk.max_id == 12


def test_out_of_order_and_duplicate_ids_are_sorted_and_published_once() -> None:
    chunk = RecordProcessor("f").process_chunk([feed_row(i) for i in (3, 1, 2, 3, 1)], 0)
    assert [event.id for event in chunk.events] == [1, 2, 3]
    assert chunk.dropped_duplicate == 2


def test_invalid_rows_count_toward_the_offset() -> None:
    chunk = RecordProcessor("f").process_chunk([feed_row(1), feed_row(2, Seconds="x")], 0)
    assert chunk.max_id == 2
    assert [letter.id for letter in chunk.dead_letters] == [2]


def test_dead_letter_keeps_the_raw_row_as_sent() -> None:
    row = feed_row(3, Seconds="12x", Note="caf\u00e9")
    (letter,) = dead_letters_of([row])
    assert letter["raw"] == json.loads(json.dumps(row))


def test_held_events_cost_about_their_size_in_memory() -> None:
    from tests.memory import rss_kib

    rows = [feed_row(i, TextDesc2="x" * 300) for i in range(1, 20_001)]
    processor = RecordProcessor("f")
    before = rss_kib()
    chunk = processor.process_chunk(rows, 0)
    # An event is ~900 bytes; orjson's own result would hold ~4 KiB each.
    assert (rss_kib() - before) / len(chunk.events) < 2


def test_a_row_too_large_for_a_kafka_batch_is_dead_lettered_with_its_raw_row_cut() -> None:
    # Regression: such a row failed its transaction on every retry, for ever.
    from cdr_stream.records import MAX_EVENT_BYTES, MAX_RAW_BYTES, RULE_TOO_LARGE

    huge = feed_row(9, Notes="x" * (MAX_EVENT_BYTES + 10))
    chunk = RecordProcessor("hero-nz").process_chunk([feed_row(8), huge, feed_row(10)], 0)
    assert [event.id for event in chunk.events] == [8, 10]
    (letter,) = chunk.dead_letters
    assert (letter.id, letter.rule, letter.key) == (9, RULE_TOO_LARGE, b"81234567")
    assert len(letter.value) < MAX_RAW_BYTES + 1024
    value = orjson.loads(letter.value)
    assert value["field"] == "Notes"
    assert f"above the limit of {MAX_EVENT_BYTES}" in value["reason"] and "Notes" in value["reason"]
    assert value["raw_truncated"] is True
    assert value["raw_bytes"] == len(orjson.dumps(huge))
    assert value["raw"].startswith('{"ID":9,"AccountCode":"81234567"')
    assert chunk.max_id == 10


def test_an_event_just_under_the_limit_is_published() -> None:
    from cdr_stream.records import MAX_EVENT_BYTES

    (event,) = RecordProcessor("f").process_chunk([feed_row(1, Notes="x" * (MAX_EVENT_BYTES - 2000))], 0).events
    assert MAX_EVENT_BYTES - 2000 < len(event.value) <= MAX_EVENT_BYTES


def test_a_huge_invalid_row_keeps_its_rule_and_a_cut_raw_row() -> None:
    from cdr_stream.records import MAX_RAW_BYTES

    row = feed_row(3, Seconds="12x", TextDesc1="y" * 500_000, AccountCode="a" * 5000)
    (letter,) = dead_letters_of([row])
    assert letter["rule"] == RULE_INVALID_FIELD and letter["field"] == "Seconds"
    assert letter["raw_truncated"] is True and len(letter["raw"]) <= MAX_RAW_BYTES
    (raw_letter,) = RecordProcessor("f").process_chunk([row], 0).dead_letters
    assert raw_letter.key is None  # a key that size is not a partitioning key


def test_a_small_dead_letter_carries_the_raw_row_as_an_object() -> None:
    (letter,) = dead_letters_of([feed_row(4, Seconds="12x")])
    assert letter["raw"]["Seconds"] == "12x"
    assert "raw_truncated" not in letter
