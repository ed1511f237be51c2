"""The Kafka side of one feed: events, dead letters and the new offset, committed in one transaction.

The transactional id is stable per feed, so starting a writer fences any older instance of the same
feed (a zombie) and aborts whatever it left open; it then closes any transaction Kafka decided but left
open on a partition (`hanging.py`) before the offset is read. Events go out as per-partition record batches
(`batches.EventBatcher`) through aiokafka's batch API, which is several times cheaper per record than one
`send` each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.errors import CommitUncertain, TransactionTimedOut, WriteError, WriterFenced
from cdr_stream.kafka.base import Headers
from cdr_stream.kafka.batches import EventBatcher
from cdr_stream.kafka.clients import connection_options
from cdr_stream.kafka.hanging import close_hanging, last_transaction
from cdr_stream.kafka.state import FilesPosition, StoredOffset
from cdr_stream.ops.logs import describe_error
from cdr_stream.records.event import EVENT_SCHEMA_VERSION, MAX_EVENT_BYTES
from cdr_stream.records.processor import HEADER_DLQ_RULE, HEADER_FEED, HEADER_SCHEMA_VERSION, ProcessedChunk

log = logging.getLogger(__name__)

# Twice the largest event: any event fits in an empty batch (records.py turns larger ones into dead letters).
_MAX_BATCH_BYTES: Final = 2 * MAX_EVENT_BYTES
_MAX_CACHED_KEYS: Final = 200_000
_STOP_TIMEOUT: Final = 10.0
_ABORT_TIMEOUT: Final = 3.0


def transactional_id(kafka: KafkaSettings, feed: str) -> str:
    return f"{kafka.transactional_id_prefix}-{feed}"


class TransactionalWriter:
    """Writes committed pages of one feed. `start()` fences older writers with the same transactional id.

    `id_suffix` extends the feed's transactional id, for a writer that must neither fence the feed's
    connector nor be fenced by it (a backfill run).
    """

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, feed: str, *, id_suffix: str = "") -> None:
        self._kafka = kafka
        self._topics = topics
        self.feed = feed
        self.transactional_id = transactional_id(kafka, feed) + (f"-{id_suffix}" if id_suffix else "")
        self._producer: AIOKafkaProducer | None = None
        self._partitions: list[int] = []
        self._partition_of_key: dict[bytes, int] = {}
        self._batcher: EventBatcher | None = None
        self._feed_header = feed.encode()

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self._kafka.transaction_timeout_ms,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=_MAX_BATCH_BYTES,
            max_request_size=2 * _MAX_BATCH_BYTES,
            compression_type=self._kafka.compression_type,
            **connection_options(self._kafka),
        )
        try:
            await asyncio.wait_for(self._start(producer), self._kafka.commit_timeout_seconds)
        except BaseException:
            await _stop_quietly(producer)
            raise
        self._producer = producer
        self._partition_of_key.clear()
        self._batcher = EventBatcher(
            producer,
            self._partition_of_key,
            self._partition,
            max_bytes=_MAX_BATCH_BYTES,
            compressed=self._kafka.compression_type is not None,
        )
        log.info("writer started", extra={"feed": self.feed, "transactional_id": self.transactional_id})

    async def _start(self, producer: AIOKafkaProducer) -> None:
        """Fence older writers, then close what Kafka left open of their transactions (`hanging.py`)."""
        await producer.client.bootstrap()
        last = await last_transaction(producer, self.transactional_id)
        await producer.start()
        self._partitions = sorted(await producer.partitions_for(self._topics.events))
        feed_partitions = [TopicPartition(self._topics.events, partition) for partition in self._partitions]
        for topic in (self._topics.dead_letter, self._topics.state):
            feed_partitions += [TopicPartition(topic, partition) for partition in await producer.partitions_for(topic)]
        await close_hanging(producer, last, feed_partitions)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        self._batcher = None
        if producer is not None:
            await _stop_quietly(producer)

    @property
    def started(self) -> bool:
        return self._producer is not None

    def _partition(self, key: bytes) -> int:
        # The Java client's murmur2 partitioning, cached: few accounts, many rows each.
        partition = self._partition_of_key.get(key)
        if partition is None:
            if len(self._partition_of_key) >= _MAX_CACHED_KEYS:
                self._partition_of_key.clear()
            partitions = self._partitions
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            self._partition_of_key[key] = partition
        return partition

    async def commit(self, chunk: ProcessedChunk, last_id: int, *, files: FilesPosition | None = None) -> None:
        """Publish the chunk's events and dead letters and store `last_id` (and `files`), all or nothing."""
        await self.commit_with_state(chunk, self.feed, StoredOffset.now(self.feed, last_id, files).encode())

    async def commit_with_state(
        self, chunk: ProcessedChunk, state_key: str, state_value: bytes, *, headers: Headers = ()
    ) -> None:
        """Publish the chunk's events and dead letters, each with `headers` added, and store `state_value`
        under `state_key` on the state topic, all or nothing."""
        producer = self._producer
        if producer is None:
            raise WriteError("the writer is not started")
        began = time.monotonic()
        try:
            async with asyncio.timeout(self._kafka.commit_timeout_seconds):
                await self._transaction(producer, chunk, (state_key.encode(), state_value), headers)
        except TimeoutError:
            raise CommitUncertain(
                f"the transaction did not complete within {self._kafka.commit_timeout_seconds:g} s"
            ) from None
        except ProducerFenced:
            # Kafka fences alike a producer whose epoch a newer instance took and one whose transaction it
            # aborted on timeout; the coordinator's clock starts after `began`, so a younger transaction
            # cannot have timed out.
            if time.monotonic() - began >= self._kafka.transaction_timeout_ms / 1000:
                raise TransactionTimedOut(
                    f"the broker aborted the transaction after transaction.timeout.ms "
                    f"({self._kafka.transaction_timeout_ms} ms) and fenced this producer"
                ) from None
            raise WriterFenced(
                f"another instance took over transactional id {self.transactional_id!r}; this one stops"
            ) from None
        except KafkaError as exc:
            raise WriteError(f"the transaction failed: {describe_error(exc)}") from None

    async def _transaction(
        self, producer: AIOKafkaProducer, chunk: ProcessedChunk, state: tuple[bytes, bytes], extra: Headers
    ) -> None:
        await producer.begin_transaction()
        try:
            deliveries = await self._send_events(producer, chunk, extra)
            for letter in chunk.dead_letters:
                headers = [(HEADER_FEED, self._feed_header), (HEADER_DLQ_RULE, letter.rule.encode()), *extra]
                deliveries.append(
                    await producer.send(self._topics.dead_letter, letter.value, key=letter.key, headers=headers)
                )
            state_key, state_value = state
            deliveries.append(await producer.send(self._topics.state, state_value, key=state_key))
            # Every delivery's outcome is collected, so a failed one surfaces here, not as an opaque commit error.
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
            failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
            if failure is not None:
                raise failure
        except BaseException:
            await _abort_quietly(producer)
            raise
        await producer.commit_transaction()

    async def _send_events(self, producer: AIOKafkaProducer, chunk: ProcessedChunk, extra: Headers) -> list[Any]:
        if not chunk.events:
            return []
        assert self._batcher is not None
        headers: Headers = [
            (HEADER_SCHEMA_VERSION, str(EVENT_SCHEMA_VERSION).encode()),
            (HEADER_FEED, self._feed_header),
            *extra,
        ]
        topic = self._topics.events
        return [
            await producer.send_batch(batch, topic, partition=partition)
            for partition, batch in self._batcher.batches(chunk.events, headers)
        ]


async def _abort_quietly(producer: AIOKafkaProducer) -> None:
    """Abort, but never wait long: a fenced or cut-off producer may never answer. Whatever stays open is
    aborted by the broker's transaction timeout or by the next writer's start, whichever comes first."""
    try:
        await asyncio.wait_for(producer.abort_transaction(), _ABORT_TIMEOUT)
    except (Exception, asyncio.CancelledError) as exc:
        log.debug("abort did not complete: %s", type(exc).__name__)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), _STOP_TIMEOUT)
    except Exception as exc:
        log.warning("producer did not stop cleanly: %s", type(exc).__name__)
