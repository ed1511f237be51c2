"""Record batches of a transaction's events, made slice by slice as aiokafka's `send_batch` takes them.

Where the C extension `_batches` is built and the producer does not compress, one C call writes every
record of a slice of events into per-partition batches, byte for byte as aiokafka's own builder writes
them (a test compares the two). `SealedBatch` hands such a batch to aiokafka's accumulator in the shape it
takes a BatchBuilder: the accumulator asks for its size and count, then, just before it sends the batch,
sets the producer's id, epoch and base sequence (`_set_producer_state`, which also writes the CRC) and
takes its bytes (`_build`); aiokafka 0.12 to 0.14 all take a batch through these methods (pyproject.toml
allows 0.14 only, for `protocol.py`). Otherwise each event is appended to aiokafka's builder, as a plain `create_batch`
user does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from cdr_stream import extensions
from cdr_stream.errors import WriteError
from cdr_stream.kafka.base import Headers
from cdr_stream.records.event import Event

#: The C extension, or None where it is not built or turned off.
native: Final = extensions.load("cdr_stream.kafka._batches")
#: Events written by one C call: the batches of a slice are all held at once before they are sent, so the
#: batches of a transaction of any size take at most about this many events' bytes more.
SLICE_EVENTS: Final = 10_000

#: A partition and a batch of records for it, as `send_batch` takes them.
PartitionBatch = tuple[int, Any]


class SealedBatch:
    """A record batch the C extension built, taken by aiokafka's accumulator as its BatchBuilder."""

    __slots__ = ("_count", "_data")

    def __init__(self, data: bytearray, count: int) -> None:
        self._data = data
        self._count = count

    def record_count(self) -> int:
        return self._count

    def size(self) -> int:
        return len(self._data)

    def closed(self) -> bool:
        return True  # nothing is appended to it through the producer

    def close(self) -> None:
        pass

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None, headers: Headers = ()) -> None:
        """Full (None): a `send` to its partition waits until it is sent and starts a batch of its own."""

    def _set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        native.seal(self._data, producer_id, producer_epoch, base_sequence)

    def _build(self) -> bytearray:
        return self._data


def encode_headers(headers: Headers) -> bytes:
    """The headers section every record carries: their count, then each key and value with its length, as
    Kafka's zigzag varints."""
    parts = [_varint(len(headers))]
    for key, value in headers:
        encoded = key.encode()
        parts += [_varint(len(encoded)), encoded, _varint(len(value)), value]
    return b"".join(parts)


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


class EventBatcher:
    """Writes events into record batches for one producer: `partition_of` caches the partition of the keys
    seen, `partition` computes the others (and caches them)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        partition_of: dict[bytes, int],
        partition: Callable[[bytes], int],
        *,
        max_bytes: int,
        compressed: bool,
    ) -> None:
        self._producer = producer
        self._partition_of = partition_of
        self._partition = partition
        self._max_bytes = max_bytes
        self.native = native is not None and not compressed

    def batches(self, events: Sequence[Event], headers: Headers) -> Iterator[PartitionBatch]:
        """The batches of `events` in the order they fill, made as they are asked for: a batch is sent before
        the next slice is written. Raises WriteError for an event no batch can hold."""
        if self.native:
            return self._native_batches(events, encode_headers(headers))
        return self._aiokafka_batches(events, headers)

    def _native_batches(self, events: Sequence[Event], headers: bytes) -> Iterator[PartitionBatch]:
        for start in range(0, len(events), SLICE_EVENTS):
            try:
                filled = native.fill(
                    list(events[start : start + SLICE_EVENTS]),
                    self._partition_of,
                    self._partition,
                    headers,
                    self._max_bytes,
                    True,
                )
            except ValueError as exc:
                position, _ = exc.args
                raise _too_large(events[start + position], self._max_bytes) from None
            for partition, data, count in filled:
                yield partition, SealedBatch(data, count)

    def _aiokafka_batches(self, events: Sequence[Event], headers: Headers) -> Iterator[PartitionBatch]:
        open_batches: dict[int, Any] = {}
        for event in events:
            partition = self._partition(event.key)
            batch = open_batches.get(partition) or self._producer.create_batch()
            # A full batch is done and the event opens the next one. An empty batch takes any event, so an
            # event that makes it larger than a batch may be is an error: no retry would make it fit.
            if not batch.append(key=event.key, value=event.value, timestamp=event.timestamp_ms, headers=headers):
                yield partition, batch
                batch = self._producer.create_batch()
                batch.append(key=event.key, value=event.value, timestamp=event.timestamp_ms, headers=headers)
            if batch.record_count() == 1 and batch.size() > self._max_bytes:
                raise _too_large(event, self._max_bytes)
            open_batches[partition] = batch
        yield from open_batches.items()


def _too_large(event: Event, max_bytes: int) -> WriteError:
    return WriteError(f"event {event.id} is larger than a whole batch ({max_bytes} bytes)")
