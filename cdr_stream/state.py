"""The offsets of all feeds, kept in a compacted topic keyed by feed name.

Reading it back must reach the true end: a stale offset would re-publish rows. With read_committed, a
partition can end in a transaction marker or aborted records that the consumer never returns, and
aiokafka may leave its position just below the end offset (aiokafka issue #911). `read_offsets` treats a
partition as read when its position reaches the end offset, or when the consumer has nothing more to
give for a while and its position no longer moves: everything below the end offset (the last stable
offset) is already decided, so what remains can only be markers or aborted records.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from cdr_stream.config import KafkaSettings
from cdr_stream.kafka_clients import admin_client, committed_reader

_IDLE_ROUNDS_AT_END: Final = 4
_ROUND_MS: Final = 250


class StateReadError(Exception):
    """The state topic could not be read to its end."""


@dataclass(frozen=True, slots=True)
class StoredOffset:
    feed: str
    last_id: int
    committed_at: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"feed": self.feed, "last_id": self.last_id, "committed_at": self.committed_at})

    @classmethod
    def decode(cls, value: bytes) -> StoredOffset:
        data: Any = orjson.loads(value)
        last_id = data.get("last_id") if isinstance(data, dict) else None
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            raise ValueError(f"not a stored offset: {value[:100]!r}")
        return cls(feed=str(data.get("feed")), last_id=last_id, committed_at=data.get("committed_at"))

    @classmethod
    def now(cls, feed: str, last_id: int) -> StoredOffset:
        return cls(feed, last_id, datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))


async def read_offsets(kafka: KafkaSettings, topic: str, *, timeout: float = 60.0) -> dict[str, StoredOffset]:
    """The latest committed offset of every feed in the state topic."""
    try:
        partitions = await asyncio.wait_for(_partitions(kafka, topic), timeout)
        consumer = committed_reader(kafka)
        try:
            await asyncio.wait_for(consumer.start(), timeout)
            return await asyncio.wait_for(_read_to_end(consumer, topic, partitions), timeout)
        finally:
            await consumer.stop()
    except TimeoutError:
        raise StateReadError(
            f"the state topic {topic!r} could not be read to its end within {timeout:g} s"
        ) from None


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    admin = admin_client(kafka)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise StateReadError(f"the state topic {topic!r} does not exist (error {described['error_code']})")
    return sorted(partition["partition"] for partition in described["partitions"])


async def _read_to_end(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[int]
) -> dict[str, StoredOffset]:
    tps = [TopicPartition(topic, partition) for partition in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)

    offsets: dict[str, StoredOffset] = {}
    idle: dict[TopicPartition, int] = dict.fromkeys(tps, 0)
    last_position = {tp: -1 for tp in tps}
    pending = set(tps)
    while pending:
        started = time.monotonic()
        batch = await consumer.getmany(*pending, timeout_ms=_ROUND_MS)
        for records in batch.values():
            for record in records:
                key = record.key.decode() if record.key else ""
                if record.value is None:
                    offsets.pop(key, None)  # a tombstone
                else:
                    offsets[key] = StoredOffset.decode(record.value)
        for tp in list(pending):
            position = await consumer.position(tp)
            if position >= end[tp]:
                pending.discard(tp)
                continue
            quiet = not batch.get(tp) and position == last_position[tp]
            idle[tp] = idle[tp] + 1 if quiet else 0
            last_position[tp] = position
            if idle[tp] >= _IDLE_ROUNDS_AT_END:
                pending.discard(tp)  # only markers or aborted records remain below the end offset
        if not batch:
            # getmany may return early without data; keep each round at least _ROUND_MS long.
            await asyncio.sleep(max(0.0, _ROUND_MS / 1000 - (time.monotonic() - started)))
    return offsets
