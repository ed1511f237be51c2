"""Reading the state topic to its end, whatever its last offsets hold (aiokafka issue #911)."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.kafka.clients import connection_options
from cdr_stream.kafka.readback import partitions_of
from cdr_stream.kafka.state import StoredOffset, read_offsets
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.records.processor import ProcessedChunk
from tests.integration.support import SETTLE_SECONDS

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


async def prepare(kafka: KafkaSettings, topics: TopicSettings) -> None:
    await prepare_topics(kafka, topics)


async def commit_offset(kafka: KafkaSettings, topics: TopicSettings, feed: str, last_id: int) -> None:
    writer = TransactionalWriter(kafka, topics, feed)
    await writer.start()
    try:
        await writer.commit(ProcessedChunk(), last_id)
    finally:
        await writer.stop()


async def end_offset(kafka: KafkaSettings, topic: str) -> int:
    from cdr_stream.kafka.clients import committed_reader

    consumer = committed_reader(kafka)
    await consumer.start()
    try:
        tps = await partitions_of(kafka, [topic])
        ends = await consumer.end_offsets(tps)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def test_aiokafka_911_a_state_topic_ending_in_a_commit_marker_is_read_to_its_end(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    await prepare(kafka, topics)
    await commit_offset(kafka, topics, "a", 10)
    await commit_offset(kafka, topics, "a", 25)
    await commit_offset(kafka, topics, "b", 7)
    # Regression test for aiokafka issue #911: a read_committed consumer may stop just below the end
    # offset when a partition ends in a transaction marker, and a naive read-to-end then waits for ever.
    # Three transactions of one record each: every record is followed by its commit marker.
    assert await end_offset(kafka, topics.state) == 6
    started = time.monotonic()
    offsets = await read_offsets(kafka, topics.state, timeout=20)
    assert {feed: stored.last_id for feed, stored in offsets.items()} == {"a": 25, "b": 7}
    assert time.monotonic() - started < 10, "reading to the end must not wait for a record that never comes"


async def test_an_aborted_tail_and_an_open_transaction_are_not_read(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    await prepare(kafka, topics)
    await commit_offset(kafka, topics, "a", 10)
    producer = AIOKafkaProducer(transactional_id="test-state-aborter", **connection_options(kafka))
    await producer.start()
    try:
        for _ in range(3):  # several aborted transactions in a row end the topic
            await producer.begin_transaction()
            await producer.send_and_wait(topics.state, StoredOffset("a", 999).encode(), key=b"a")
            await producer.abort_transaction()
        assert (await read_offsets(kafka, topics.state, timeout=20, settle_seconds=SETTLE_SECONDS))["a"].last_id == 10
        await producer.begin_transaction()  # left open while the state is read
        await producer.send_and_wait(topics.state, StoredOffset("a", 555).encode(), key=b"a")
        assert (await read_offsets(kafka, topics.state, timeout=20))["a"].last_id == 10
        await producer.commit_transaction()
        assert (await read_offsets(kafka, topics.state, timeout=20, settle_seconds=SETTLE_SECONDS))["a"].last_id == 555
    finally:
        await producer.stop()


async def test_a_settled_read_waits_for_an_open_transaction_only_as_long_as_asked(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    await prepare(kafka, topics)
    await commit_offset(kafka, topics, "a", 10)
    producer = AIOKafkaProducer(transactional_id="test-state-settler", **connection_options(kafka))
    await producer.start()
    try:
        await producer.begin_transaction()  # left open while the state is read
        await producer.send_and_wait(topics.state, StoredOffset("a", 555).encode(), key=b"a")
        started = time.monotonic()
        assert (await read_offsets(kafka, topics.state, settle_seconds=1.0))["a"].last_id == 10
        assert time.monotonic() - started >= 1.0, "the read waited for the open transaction to be decided"
        assert f"{topics.state}[0] 2..3" in caplog.text, "the read says which partition it left undecided"
        await producer.commit_transaction()
        # Each read starts the moment a commit returns, when its markers may still be on their way.
        for last_id in range(600, 620):
            await producer.begin_transaction()
            await producer.send_and_wait(topics.state, StoredOffset("a", last_id).encode(), key=b"a")
            await producer.commit_transaction()
            assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))["a"].last_id == last_id
    finally:
        await producer.stop()


async def test_state_set_works_before_the_connector_ever_ran(kafka: KafkaSettings, topics: TopicSettings) -> None:
    from cdr_stream.commands.common import Exit
    from cdr_stream.commands.state import set_state
    from cdr_stream.config import parse_settings

    settings = parse_settings(
        {
            "feeds": [{"name": "fresh", "url": "http://127.0.0.1:9/f", "login": "l", "password": "p"}],
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
            "topics": topics.model_dump(),
        },
        {},
    )
    assert await set_state(settings, "fresh", 41) == Exit.OK
    assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))["fresh"].last_id == 41
