"""Transactions Kafka decided but left open on a partition (kafka/hanging.py), made on the real brokers.

On the three-broker cluster the feed's topics are placed so that the state partition and one events
partition live on one node alone. A writer of the feed writes a transaction, that node is killed and
fenced, and the transaction is committed (or aborted): the coordinator, finding no leader for those
partitions, skips their markers as if the partitions were deleted (KAFKA-20734). The node comes back with
the transaction open on them. The next writer of the feed must close it with the coordinator's decision
before the offset is read, so nothing is published twice or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.kafka.clients import admin_client, connection_options
from cdr_stream.kafka.hanging import open_transactions
from cdr_stream.kafka.readback import committed_records
from cdr_stream.kafka.state import StoredOffset, read_offsets
from cdr_stream.kafka.writer import TransactionalWriter, transactional_id
from cdr_stream.records.event import Event
from cdr_stream.records.processor import ProcessedChunk
from tests.integration.cluster import NODES, Cluster
from tests.integration.support import FEED, SETTLE_SECONDS, delete_topics, fresh_topics

pytestmark = pytest.mark.kafka

_FENCED_WITHIN = 60.0


def _value(row_id: int) -> bytes:
    return b"event-%d" % row_id


async def _committed_ids(kafka: KafkaSettings, topic: str) -> Counter[int]:
    ids: Counter[int] = Counter()
    async for records in committed_records(kafka, [topic], settle_seconds=SETTLE_SECONDS):
        ids.update(int(record.value.removeprefix(b"event-")) for record in records)
    return ids


async def _offset(kafka: KafkaSettings, topics: TopicSettings) -> int | None:
    stored = (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS)).get(FEED)
    return None if stored is None else stored.last_id


async def _create_placed(kafka: KafkaSettings, topics: TopicSettings, alone: int, other: int) -> None:
    """Events partition 0 and the state on node `alone` only, events partition 1 and dead letters on `other`."""
    single = {"min.insync.replicas": "1"}
    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.events, -1, -1, replica_assignments={0: [alone], 1: [other]}, topic_configs=single),
                NewTopic(topics.dead_letter, -1, -1, replica_assignments={0: [other]}, topic_configs=single),
                NewTopic(
                    topics.state,
                    -1,
                    -1,
                    replica_assignments={0: [alone]},
                    topic_configs={**single, "cleanup.policy": "compact"},
                ),
            ]
        )
    finally:
        await admin.close()


@pytest.fixture
async def placed(cluster: Cluster) -> AsyncIterator[tuple[Cluster, TopicSettings, int]]:
    """Fresh topics placed for the test; the node that holds the state partition alone."""
    topics = fresh_topics()
    coordinator = await cluster.transaction_coordinator(transactional_id(cluster.kafka, FEED))
    alone = next(node for node in NODES if node != coordinator)
    await _create_placed(cluster.kafka, topics, alone, coordinator)
    yield cluster, topics, alone
    await cluster.start_all()
    await delete_topics(cluster.kafka, topics)


async def _until_leader(cluster: Cluster, topic: str, leader: int) -> None:
    for _ in range(int(_FENCED_WITHIN / 0.5)):
        with contextlib.suppress(KafkaError):  # the admin client may ask the node that is down
            if await cluster.leader_of(topic, 0) == leader:
                return
        await asyncio.sleep(0.5)
    pytest.fail(f"{topic}[0] did not get leader {leader} within {_FENCED_WITHIN:g} s")


async def _earlier_writer_leaves_open(cluster: Cluster, topics: TopicSettings, alone: int, *, commit: bool) -> int:
    """An earlier writer of the feed commits IDs 1..100, then writes 101..200 and ends that transaction
    (commit or abort) while node `alone` is down and fenced, so its markers there are skipped. Returns the
    writer's producer id."""
    producer = AIOKafkaProducer(
        transactional_id=transactional_id(cluster.kafka, FEED),
        enable_idempotence=True,
        acks="all",
        **connection_options(cluster.kafka),
    )
    await producer.start()
    try:
        for first, last in ((1, 100), (101, 200)):
            await producer.begin_transaction()
            sent = [
                await producer.send(topics.events, _value(row_id), key=b"acct", partition=row_id % 2)
                for row_id in range(first, last + 1)
            ]
            sent.append(await producer.send(topics.state, StoredOffset.now(FEED, last).encode(), key=FEED.encode()))
            await asyncio.gather(*sent)
            if last == 100:
                await producer.commit_transaction()
        await cluster.kill(alone)
        await _until_leader(cluster, topics.state, -1)  # the controller fenced the node
        await (producer.commit_transaction() if commit else producer.abort_transaction())
        producer_id = int(producer._txn_manager.producer_id)
    finally:
        await producer.stop()
    await cluster.start(alone)
    await _until_leader(cluster, topics.state, alone)
    return producer_id


async def _assert_left_open(kafka: KafkaSettings, topics: TopicSettings, producer_id: int) -> None:
    """The precondition: the broker skipped the markers, so the transaction is open on the node's partitions
    (if Kafka stops skipping them, this fails and the test must be revisited)."""
    writer = AIOKafkaProducer(**connection_options(kafka))
    await writer.start()
    try:
        state = TopicPartition(topics.state, 0)
        await writer.client._wait_on_metadata(topics.state)
        await writer.client._wait_on_metadata(topics.events)
        left = await open_transactions(writer, [state, TopicPartition(topics.events, 0)], producer_id, 2**31)
    finally:
        await writer.stop()
    assert {entry.partition for entry in left} == {state, TopicPartition(topics.events, 0)}, left


@pytest.mark.parametrize(("commit", "offset_after"), [(True, 200), (False, 100)], ids=["commit", "abort"])
async def test_a_transaction_whose_markers_kafka_skipped_is_completed_by_the_next_writer(
    placed: tuple[Cluster, TopicSettings, int], commit: bool, offset_after: int
) -> None:
    cluster, topics, alone = placed
    kafka = cluster.kafka
    producer_id = await _earlier_writer_leaves_open(cluster, topics, alone, commit=commit)
    await _assert_left_open(kafka, topics, producer_id)

    writer = TransactionalWriter(kafka, topics, FEED)
    await writer.start()
    try:
        # Committed: 101..200 count once the writer started. Aborted: they are gone, and are sent again.
        assert await _offset(kafka, topics) == offset_after
        last = offset_after + 100
        events = [Event(row_id, b"acct", 0, _value(row_id)) for row_id in range(offset_after + 1, last + 1)]
        await writer.commit(ProcessedChunk(events=events, max_id=last), last)
    finally:
        await writer.stop()
    ids = await _committed_ids(kafka, topics.events)
    assert ids == Counter(range(1, last + 1)), sorted((row_id, n) for row_id, n in ids.items() if n != 1)[:10]
    assert await _offset(kafka, topics) == last
