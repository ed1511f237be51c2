"""Read topics to their end as a read_committed consumer sees them.

With read_committed, a partition can end in a transaction marker or aborted records that the consumer
never returns, and aiokafka may leave its position just below the end offset (aiokafka issue #911). A
partition counts as read when its position reaches the end offset, or when the broker has answered
several fetches of it in a row with nothing more to give and its position no longer moves: everything
below the end offset (the last stable offset) is already decided, so what remains can only be markers or
aborted records. Rounds in which the broker has not answered yet do not count: a slow broker makes the
read wait (up to its caller's timeout), never end early with part of the partition.

A committed transaction's markers are written after the producer's commit returns, one partition after
another, so a reader that starts right after a commit can find some of its partitions still below their
markers. `settle_seconds` waits, within that time, until no partition holds an undecided record (its last
stable offset equals its high watermark) before the end offsets are taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from cdr_stream.config import KafkaSettings
from cdr_stream.errors import TopicMissingError
from cdr_stream.kafka.clients import admin_client, committed_reader, connection_options

log = logging.getLogger(__name__)

_IDLE_ROUNDS_AT_END: Final = 4
_ROUND_MS: Final = 250
_SETTLE_PAUSE_SECONDS: Final = 0.05


async def partitions_of(kafka: KafkaSettings, topics: Iterable[str]) -> list[TopicPartition]:
    admin = admin_client(kafka)
    try:
        await admin.start()
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    result: list[TopicPartition] = []
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise TopicMissingError(f"topic {topic['topic']!r} does not exist (error {topic['error_code']})")
        result.extend(TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"])
    return sorted(result)


async def committed_records(
    kafka: KafkaSettings, topics: Iterable[str], *, settle_seconds: float = 0.0
) -> AsyncIterator[list[Any]]:
    """Every committed record of `topics`, in batches, from the beginning to the end as of the call (or,
    with `settle_seconds`, as of the moment within it when no partition holds an undecided record)."""
    tps = await partitions_of(kafka, topics)
    consumer = committed_reader(kafka)
    await consumer.start()
    try:
        end = await settled_end_offsets(kafka, consumer, tps, settle_seconds)
        async for batch in read_to_end(consumer, tps, end):
            yield batch
    finally:
        await consumer.stop()


async def settled_end_offsets(
    kafka: KafkaSettings, consumer: AIOKafkaConsumer, tps: list[TopicPartition], settle_seconds: float
) -> dict[TopicPartition, int]:
    """The read_committed end offsets (last stable offsets) of `tps`: the first ones, within
    `settle_seconds`, that equal the high watermarks, else the last ones taken."""
    stable: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    if settle_seconds <= 0:
        return stable
    deadline = time.monotonic() + settle_seconds
    watermarks = AIOKafkaConsumer(isolation_level="read_uncommitted", **connection_options(kafka))
    await watermarks.start()
    try:
        while True:
            high: dict[TopicPartition, int] = await watermarks.end_offsets(tps)
            if all(stable[tp] >= high[tp] for tp in tps):
                return stable
            if time.monotonic() >= deadline:
                undecided = ", ".join(
                    f"{tp.topic}[{tp.partition}] {stable[tp]}..{high[tp]}" for tp in tps if stable[tp] < high[tp]
                )
                log.warning(
                    "read up to records still undecided after %g s (a transaction open, or one Kafka left open: "
                    "docs/operations.md, hanging transactions): %s",
                    settle_seconds,
                    undecided,
                )
                return stable
            await asyncio.sleep(_SETTLE_PAUSE_SECONDS)
            stable = await consumer.end_offsets(tps)
    finally:
        await watermarks.stop()


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int]
) -> AsyncIterator[list[Any]]:
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    idle = dict.fromkeys(tps, 0)
    last_position = dict.fromkeys(tps, -1)
    answered: dict[TopicPartition, int | None] = dict.fromkeys(tps)
    # A partition that starts at its end (empty, or emptied by retention) has nothing to wait for.
    pending = {tp for tp in tps if await consumer.position(tp) < end[tp]}
    while pending:
        started = time.monotonic()
        batch = await consumer.getmany(*pending, timeout_ms=_ROUND_MS)
        for records in batch.values():
            yield records
        for tp in list(pending):
            position = await consumer.position(tp)
            if position >= end[tp]:
                pending.discard(tp)
                continue
            # A round is quiet only when the broker answered a fetch of the partition since the last one
            # and nothing came: a slow broker (no answer yet) is waited for, never taken for the end.
            polled = consumer.last_poll_timestamp(tp)
            if batch.get(tp) or position != last_position[tp]:
                idle[tp] = 0
            elif polled is not None and polled != answered[tp]:
                idle[tp] += 1
            last_position[tp], answered[tp] = position, polled
            if idle[tp] >= _IDLE_ROUNDS_AT_END:
                pending.discard(tp)  # only markers or aborted records remain below the end offset
        if not batch:
            # getmany may return early without data; keep each round at least _ROUND_MS long.
            await asyncio.sleep(max(0.0, _ROUND_MS / 1000 - (time.monotonic() - started)))
