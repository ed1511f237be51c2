"""The whole path on the real broker: simulator -> connector -> Kafka -> a read_committed consumer."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector
from cdr_stream.kafka.clients import admin_client
from cdr_stream.kafka.state import read_offsets
from cdr_stream.ops.checker import IdRange, check_feed
from cdr_stream.records.processor import HEADER_FEED, HEADER_SCHEMA_VERSION
from cdr_stream.records.values import parse_utc
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    FEED,
    PASSWORD,
    SETTLE_SECONDS,
    assert_clean,
    create_topic,
    delete_topics,
    fresh_topics,
    read_published,
    run_until_caught_up,
    settings_for,
    wait_for,
)
from tests.properties import EVENT_VALIDATOR

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


@pytest.mark.parametrize("numbers_as", ["number", "string"])
async def test_every_row_is_published_or_dead_lettered_exactly_once(
    kafka: KafkaSettings, topics: TopicSettings, numbers_as: str
) -> None:
    config = SimulatorConfig(
        password=PASSWORD, records=3000, page_size=700, invalid_rate=0.03, numbers_as=numbers_as, seed=11
    )
    async with FeedSimulator(config) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics), sim)
        invalid = {row_id for row_id in sim.ids() if sim.is_invalid(row_id)}
        expected = set(sim.ids())
        records = {row_id: sim.record(row_id) for row_id in sim.ids()}

    await assert_clean(kafka, topics, IdRange(1, max(expected)))  # once each, in order, offset at the end
    published = await read_published(kafka, topics)
    assert set(published.dead_letter_ids()) == invalid
    assert invalid, "the simulator should have made some invalid rows"

    accounts: dict[bytes, set[int]] = defaultdict(set)
    for record in published.events:
        event = orjson.loads(record.value)
        row = records[event["id"]]
        assert record.key == str(row["AccountCode"]).encode() == event["account_code"].encode()
        assert record.timestamp == int(parse_utc(event["utc_datetime"]).timestamp() * 1000)
        assert dict(record.headers)[HEADER_FEED] == FEED.encode()
        assert dict(record.headers)[HEADER_SCHEMA_VERSION] == b"2"
        EVENT_VALIDATOR.validate(event)
        accounts[record.key].add(record.partition)
    assert all(len(partitions) == 1 for partitions in accounts.values()), "an account spans partitions"

    for record in published.dead_letters:
        letter = orjson.loads(record.value)
        assert letter["rule"] and letter["reason"]
        assert letter["raw"]["ID"] in (letter["id"], str(letter["id"]))

    assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id == max(expected)


async def test_created_topics_keep_old_calls_and_the_state_topic_is_compacted(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    from cdr_stream.kafka.topics import check_state_topic, topic_config

    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=10)) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics), sim)
    admin = admin_client(kafka)
    await admin.start()
    try:
        await check_state_topic(admin, topics.state)  # raises unless cleanup.policy is exactly compact
        # Events are stamped with the call's time: any time retention would delete a catch-up of old calls.
        for name in (topics.events, topics.dead_letter):
            assert (await topic_config(admin, name, ["retention.ms"]))["retention.ms"] == "-1"
    finally:
        await admin.close()


async def test_an_events_topic_with_time_retention_draws_a_warning(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    await create_topic(kafka, topics.events, {"retention.ms": "604800000"})
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=10)) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics), sim)
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "cdr_stream.kafka.topics" and r.levelname == "WARNING"
    ]
    assert any(topics.events in message and "7.0 days" in message for message in warnings), warnings


async def test_a_restart_resumes_after_the_stored_offset_without_duplicates(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=1200, page_size=400)) as sim:
        settings = settings_for(sim, kafka, topics)
        await run_until_caught_up(settings, sim)
        first = await read_published(kafka, topics)
        sim.add_records(900)
        await run_until_caught_up(settings, sim)
        # A third run with nothing new asks once from the stored offset and publishes nothing.
        asked_before = len(sim.requests)
        await run_until_caught_up(settings, sim)
        assert [request.fromid for request in sim.requests[asked_before:]][:1] == [sim.max_id]
        expected = set(sim.ids())

    assert len(first.all_ids()) == 1200
    await assert_clean(kafka, topics, IdRange(1, max(expected)))


async def test_credentials_travel_only_in_post_bodies(kafka: KafkaSettings, topics: TopicSettings) -> None:
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=500, page_size=200)) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics), sim)
        requests = list(sim.requests)
    assert requests
    for request in requests:
        assert request.method == "POST"
        assert request.password_in_body and not request.password_in_query
        assert request.query_keys == ()
        assert request.fromid is not None


async def test_an_existing_state_topic_without_compaction_is_refused(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    from cdr_stream.errors import TopicSetupError

    await create_topic(kafka, topics.state, {"cleanup.policy": "delete"})
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=5)) as sim:
        connector = Connector(settings_for(sim, kafka, topics))
        with pytest.raises(TopicSetupError, match="compact"):
            await connector.start()
        await connector.stop()


async def test_two_feeds_in_one_connector_keep_their_own_offsets(kafka: KafkaSettings, topics: TopicSettings) -> None:
    from cdr_stream.config import parse_settings

    first_config = SimulatorConfig(password=PASSWORD, records=700, page_size=300, seed=1)
    second_config = SimulatorConfig(password=PASSWORD, records=400, page_size=300, seed=2, first_id=5000)
    async with FeedSimulator(first_config) as first, FeedSimulator(second_config) as second:
        feeds = [
            {"name": name, "url": sim.url, "login": "demo", "password": PASSWORD, "poll_interval_seconds": 0.2}
            for name, sim in (("nz", first), ("uk", second))
        ]
        settings = parse_settings(
            {"feeds": feeds, "kafka": {"bootstrap_servers": kafka.bootstrap_servers}, "topics": topics.model_dump()},
            {},
        )
        connector = Connector(settings)
        await connector.start()
        try:
            await wait_for(
                lambda: [p.last_id for p in connector.pollers] == [first.max_id, second.max_id], 60, "both feeds"
            )
        finally:
            await connector.stop()
    offsets = await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS)
    assert {feed: stored.last_id for feed, stored in offsets.items()} == {"nz": 700, "uk": 5399}
    for feed, ids in (("nz", IdRange(1, 700)), ("uk", IdRange(5000, 5399))):
        result = await check_feed(kafka, topics, feed, ids)
        assert result.clean and result.unexpected == 0, result.summary()
    assert {p.writer.transactional_id for p in connector.pollers} == {"cdr-stream-nz", "cdr-stream-uk"}


async def test_the_c_batches_publish_what_aiokafkas_builder_publishes(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    # Without compression the events go out as record batches the C extension builds; with it, through
    # aiokafka's own builder. The broker must hold the same records either way.
    config = SimulatorConfig(password=PASSWORD, records=2500, page_size=900, invalid_rate=0.02, seed=21)
    compressed_topics = fresh_topics()
    by_partition: dict[str | None, dict[int, list[Any]]] = {}
    try:
        async with FeedSimulator(config) as sim:
            for compression, run_topics in ((None, topics), ("gzip", compressed_topics)):
                run_kafka = kafka.model_copy(update={"compression_type": compression})
                await run_until_caught_up(settings_for(sim, run_kafka, run_topics), sim)
                published = await read_published(kafka, run_topics)
                records = by_partition.setdefault(compression, {})
                for record in published.events:
                    records.setdefault(record.partition, []).append(
                        (record.key, record.value, record.timestamp, list(record.headers))
                    )
    finally:
        await delete_topics(kafka, compressed_topics)
    assert by_partition[None] == by_partition["gzip"]
    assert sum(len(records) for records in by_partition[None].values()) > 2000
