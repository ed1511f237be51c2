"""The four answer formats on the real broker: the same simulated rows give the same events, byte for byte."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from cdr_stream.answers.formats import AnswerFormat
from cdr_stream.config import KafkaSettings
from cdr_stream.errors import DeadLetterRule
from cdr_stream.records.event import Event
from cdr_stream.records.processor import RecordProcessor
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from cdr_stream.simulator.formats import NumbersAs, json_row
from tests.integration.support import (
    FEED,
    PASSWORD,
    Published,
    delete_topics,
    fresh_topics,
    read_published,
    run_until_caught_up,
    settings_for,
)
from tests.properties import EVENT_VALIDATOR

pytestmark = pytest.mark.kafka

VARIANTS: list[tuple[AnswerFormat, NumbersAs]] = [
    ("json", "number"),
    ("json", "string"),
    ("csv", "number"),
    ("txt", "number"),
    ("pipe", "number"),
]


def events_by_id(published: Published) -> dict[int, tuple[Any, ...]]:
    """Everything a consumer sees of each event: partition, key, value bytes, headers and timestamp."""
    return {
        orjson.loads(record.value)["id"]: (record.partition, record.key, record.value, record.headers, record.timestamp)
        for record in published.events
    }


def dead_letter_rules(published: Published) -> dict[int, tuple[str, str | None]]:
    letters = (orjson.loads(record.value) for record in published.dead_letters)
    return {letter["id"]: (letter["rule"], letter["field"]) for letter in letters}


async def test_every_format_gives_the_same_events_and_dead_letters(kafka: KafkaSettings) -> None:
    # Service rows carry quoted separators, quotes and tabs; 3% of rows are broken in each of the five ways;
    # 5% are account-level fees, 5% credits, and 5% each carry a zero BillDate, "60.0" or a spelled offset.
    config = SimulatorConfig(
        password=PASSWORD,
        records=4000,
        page_size=900,
        invalid_rate=0.03,
        seed=23,
        account_fee_rate=0.05,
        credit_rate=0.05,
        zero_bill_date_rate=0.05,
        whole_float_rate=0.05,
        offset_spelling_rate=0.05,
    )
    published: dict[tuple[str, str], Published] = {}
    for fmt, numbers_as in VARIANTS:
        topics = fresh_topics()
        try:
            async with FeedSimulator(replace(config, numbers_as=numbers_as)) as sim:
                settings = settings_for(sim, kafka, topics, format=fmt, max_rows_per_transaction=700)
                await run_until_caught_up(settings, sim)
                invalid = {row_id for row_id in sim.ids() if sim.is_invalid(row_id)}
                quirks = {row_id: sim.generator.quirks(row_id) for row_id in sim.ids()}
            published[fmt, numbers_as] = await read_published(kafka, topics)
        finally:
            await delete_topics(kafka, topics)
        # Only the invalid rows are dead letters: every fee, credit and PHP spelling is published.
        assert set(dead_letter_rules(published[fmt, numbers_as])) == invalid, f"{fmt}/{numbers_as}"

    reference = events_by_id(published["json", "number"])
    reference_rules = dead_letter_rules(published["json", "number"])
    assert len(reference) + len(reference_rules) == config.records
    rules = {rule for rule, _ in reference_rules.values()}
    assert {DeadLetterRule.MISSING_FIELD, DeadLetterRule.INVALID_FIELD, DeadLetterRule.INVALID_VALUE} <= rules
    check_php_forms_were_read(published["json", "number"], quirks)
    for (fmt, numbers_as), output in published.items():
        events = events_by_id(output)
        assert len(events) == len(output.events), f"{fmt}/{numbers_as}: an event was published twice"
        assert events == reference, f"{fmt}/{numbers_as} events differ from JSON's"
        expected_rules = reference_rules
        if fmt != "json":
            # A text row cannot leave a field out, only leave it empty: what JSON omits is an invalid value.
            expected_rules = {
                row_id: (DeadLetterRule.INVALID_FIELD if rule == DeadLetterRule.MISSING_FIELD else rule, field)
                for row_id, (rule, field) in reference_rules.items()
            }
        assert dead_letter_rules(output) == expected_rules, f"{fmt}/{numbers_as} dead letters differ"
        assert output.last_state()["last_id"] == config.records


def check_php_forms_were_read(published: Published, quirks: dict[int, frozenset[str]]) -> None:
    """Each PHP form the simulator wrote was read into the event, with nothing unreadable."""
    seen: set[str] = set()
    offsets: set[float] = set()
    for record in published.events:
        event = orjson.loads(record.value)
        EVENT_VALIDATOR.validate(event)
        assert "unreadable" not in event, event
        forms = quirks[event["id"]]
        seen |= forms
        if forms & {"account_fee", "credit"}:
            assert event["a_party"] is event["b_party"] is event["bill_number"] is None
        if "credit" in forms:
            assert event["charge"].startswith("-") and event["charge_excl"].startswith("-")
        if "zero_bill_date" in forms:
            assert event["bill_date"] is None
        if "whole_float" in forms:
            assert all(isinstance(event[name], int) for name in ("seconds", "network_seconds", "free_units_used"))
        if "offset_spelling" in forms:
            offsets.add(event["utc_offset_hours"])
    assert seen == {"account_fee", "credit", "zero_bill_date", "whole_float", "offset_spelling"}, seen
    # NZ (+13, +12), the Chatham Islands (+13:45, +12:45) and the UK (+1) in the simulated week.
    assert {1, 12, 13} <= offsets and offsets & {12.75, 13.75}, offsets


async def test_a_cut_off_or_foreign_text_answer_is_retried_and_no_row_is_lost_or_mangled(kafka: KafkaSettings) -> None:
    config = SimulatorConfig(
        password=PASSWORD, records=3000, page_size=400, seed=8, truncate_rate=0.3, html_error_rate=0.2
    )
    topics = fresh_topics()
    try:
        async with FeedSimulator(config) as sim:
            await run_until_caught_up(settings_for(sim, kafka, topics, format="txt"), sim, timeout=180)
            faults = {request.fault for request in sim.requests if request.fault}
            # What each row gives when it arrives whole, as JSON.
            processor = RecordProcessor(FEED)
            expected = {
                row_id: processor.normalize(row_id, orjson.loads(json_row(sim.record(row_id), "number")))
                for row_id in sim.ids()
            }
        published = await read_published(kafka, topics)
    finally:
        await delete_topics(kafka, topics)
    assert {"truncate", "html_error"} <= faults, faults
    events = {event.id: event.value for event in expected.values() if isinstance(event, Event)}
    assert {orjson.loads(record.value)["id"]: record.value for record in published.events} == events
    assert len(published.events) == len(events) == config.records
    assert published.dead_letters == []
