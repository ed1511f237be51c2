"""The four answer formats on the real broker: the same simulated rows give the same events, byte for byte."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from cdr_stream.body import AnswerFormat
from cdr_stream.config import KafkaSettings
from cdr_stream.records import RULE_INVALID_FIELD, RULE_MISSING_FIELD, Event, RecordProcessor
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
    # Service rows carry quoted separators, quotes and tabs; 3% of rows are broken in each of the five ways.
    config = SimulatorConfig(password=PASSWORD, records=4000, page_size=900, invalid_rate=0.03, seed=23)
    published: dict[tuple[str, str], Published] = {}
    for fmt, numbers_as in VARIANTS:
        topics = fresh_topics()
        try:
            async with FeedSimulator(replace(config, numbers_as=numbers_as)) as sim:
                settings = settings_for(sim, kafka, topics, format=fmt, max_rows_per_transaction=700)
                await run_until_caught_up(settings, sim)
            published[fmt, numbers_as] = await read_published(kafka, topics)
        finally:
            await delete_topics(kafka, topics)

    reference = events_by_id(published["json", "number"])
    reference_rules = dead_letter_rules(published["json", "number"])
    assert len(reference) + len(reference_rules) == config.records
    assert RULE_MISSING_FIELD in {rule for rule, _ in reference_rules.values()}
    for (fmt, numbers_as), output in published.items():
        events = events_by_id(output)
        assert len(events) == len(output.events), f"{fmt}/{numbers_as}: an event was published twice"
        assert events == reference, f"{fmt}/{numbers_as} events differ from JSON's"
        expected_rules = reference_rules
        if fmt != "json":
            # A text row cannot leave a field out, only leave it empty: what JSON omits is an invalid value.
            expected_rules = {
                row_id: (RULE_INVALID_FIELD if rule == RULE_MISSING_FIELD else rule, field)
                for row_id, (rule, field) in reference_rules.items()
            }
        assert dead_letter_rules(output) == expected_rules, f"{fmt}/{numbers_as} dead letters differ"
        assert output.last_state()["last_id"] == config.records


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
