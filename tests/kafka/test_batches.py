"""Record batches: the C extension's are byte for byte aiokafka's, and read back as what was written."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given
from hypothesis import strategies as st

from cdr_stream.errors import WriteError
from cdr_stream.kafka import batches
from cdr_stream.kafka.base import Headers
from cdr_stream.kafka.batches import EventBatcher, SealedBatch, encode_headers
from cdr_stream.records.event import Event
from tests.native import assert_built_from_sources, needs_native
from tests.strategies import SUITE_SETTINGS

HEADERS: Headers = [("cdr-schema-version", b"2"), ("cdr-feed", b"hero-nz")]
PRODUCER = (4711, 3, 1200)


class BuilderSource:
    """What EventBatcher asks of a producer: aiokafka's own BatchBuilder, as `create_batch` makes it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.max_bytes, 0, is_transactional=1)


def batcher(*, native: bool, max_bytes: int, partitions: int = 6) -> tuple[EventBatcher, dict[bytes, int]]:
    cache: dict[bytes, int] = {}

    def partition(key: bytes) -> int:
        cache[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
        return cache[key]

    made = EventBatcher(BuilderSource(max_bytes), cache, partition, max_bytes=max_bytes, compressed=not native)  # type: ignore[arg-type]
    assert made.native is native
    return made, cache


def built(result: Iterable[tuple[int, Any]]) -> list[tuple[int, bytes]]:
    out = []
    for partition, batch in result:
        batch._set_producer_state(*PRODUCER)
        out.append((partition, bytes(batch._build())))
    return out


def events_of(count: int, seed: int, *, sizes: tuple[int, int] = (0, 2000)) -> list[Event]:
    rng = random.Random(seed)
    start = rng.randrange(0, 2_000_000_000_000)
    return [
        Event(
            id=row_id,
            key=f"ACC{rng.randrange(40):03d}".encode() if rng.random() > 0.02 else b"",
            timestamp_ms=start + rng.randrange(-(10**9), 10**9),
            value=bytes(rng.randrange(256) for _ in range(rng.randrange(*sizes))),
        )
        for row_id in range(1, count + 1)
    ]


def test_the_extension_is_built_from_the_source_beside_it() -> None:
    assert_built_from_sources(batches.native, Path(batches.__file__).parent, "_batches")


@needs_native
@pytest.mark.parametrize(("count", "max_bytes"), [(1, 4096), (300, 4096), (2000, 65536), (5000, 524288)])
def test_the_c_batches_are_aiokafkas_byte_for_byte(count: int, max_bytes: int) -> None:
    events = events_of(count, seed=count)
    native, native_cache = batcher(native=True, max_bytes=max_bytes)
    python, _ = batcher(native=False, max_bytes=max_bytes)
    ours = built(native.batches(events, HEADERS))
    theirs = built(python.batches(events, HEADERS))
    assert [partition for partition, _ in ours] == [partition for partition, _ in theirs]
    assert ours == theirs
    assert all(len(data) <= max_bytes for _, data in ours)
    assert set(native_cache) == {event.key for event in events}, "each key's partition is cached"


@needs_native
@SUITE_SETTINGS
@given(
    st.lists(
        st.tuples(st.binary(max_size=40), st.integers(-(2**40), 2**41), st.binary(max_size=3000)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=200)), max_size=4),
    st.integers(min_value=3200, max_value=20000),
)
def test_any_events_and_headers_make_the_same_batches(
    rows: list[tuple[bytes, int, bytes]], headers: list[tuple[str, bytes]], max_bytes: int
) -> None:
    events = [Event(i, key, ts, value) for i, (key, ts, value) in enumerate(rows, start=1)]
    native, _ = batcher(native=True, max_bytes=max_bytes)
    python, _ = batcher(native=False, max_bytes=max_bytes)
    assert built(native.batches(events, headers)) == built(python.batches(events, headers))


@needs_native
def test_a_batch_reads_back_as_its_events_with_a_valid_crc() -> None:
    events = events_of(3000, seed=5)
    native, cache = batcher(native=True, max_bytes=65536)
    read: dict[int, list[tuple[bytes | None, int, bytes | None, list[tuple[str, bytes]]]]] = {}
    for partition, data in built(native.batches(events, HEADERS)):
        batch = DefaultRecordBatch(data)
        assert batch.validate_crc()
        assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == PRODUCER
        assert batch.is_transactional
        offsets = []
        for record in batch:
            offsets.append(record.offset)
            read.setdefault(partition, []).append((record.key, record.timestamp, record.value, list(record.headers)))
        assert offsets == list(range(len(offsets)))
    expected: dict[int, list[Any]] = {}
    for event in events:
        expected.setdefault(cache[event.key], []).append((event.key, event.timestamp_ms, event.value, HEADERS))
    assert read == expected


@needs_native
def test_sealing_again_gives_the_same_bytes_and_the_crc_follows_the_producer() -> None:
    native, _ = batcher(native=True, max_bytes=65536)
    [(_, batch)] = native.batches(events_of(10, seed=1)[:1], HEADERS)
    assert isinstance(batch, SealedBatch)
    batch._set_producer_state(*PRODUCER)
    first = bytes(batch._build())
    batch._set_producer_state(*PRODUCER)
    assert bytes(batch._build()) == first
    batch._set_producer_state(PRODUCER[0], PRODUCER[1] + 1, PRODUCER[2])
    other = DefaultRecordBatch(bytes(batch._build()))
    assert other.validate_crc() and other.producer_epoch == PRODUCER[1] + 1
    assert batches.native.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert batch.record_count() == 1 and batch.closed()
    assert batch.append(timestamp=1, key=b"k", value=b"v") is None, "a send to its partition opens a new batch"


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False], ids=["c", "aiokafka"])
def test_an_event_no_batch_can_hold_names_its_id(native: bool) -> None:
    events = events_of(5, seed=2, sizes=(100, 200))
    events[3] = events[3]._replace(value=b"x" * 5000)
    made, _ = batcher(native=native, max_bytes=4096)
    with pytest.raises(WriteError, match=r"event 4 is larger than a whole batch \(4096 bytes\)"):
        list(made.batches(events, HEADERS))


@needs_native
def test_more_events_than_a_slice_are_all_written() -> None:
    events = events_of(batches.SLICE_EVENTS + 7, seed=3, sizes=(10, 30))
    native, _ = batcher(native=True, max_bytes=524288)
    result = list(native.batches(events, HEADERS))
    assert sum(batch.record_count() for _, batch in result) == len(events)
    assert len(result) > 6, "each slice closes its partitions' batches"


def test_headers_are_encoded_as_kafka_reads_them() -> None:
    assert encode_headers([]) == b"\x00"
    assert encode_headers([("a", b"xy")]) == b"\x02\x02a\x04xy"
    long_value = b"v" * 200
    assert encode_headers([("k", long_value)]) == b"\x02\x02k\x90\x03" + long_value  # 200 zigzagged: 400


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False], ids=["c", "aiokafka"])
def test_batches_are_made_as_they_are_asked_for(native: bool) -> None:
    # A transaction of any size is sent slice by slice: the next slice's keys are not even looked at yet.
    events = events_of(batches.SLICE_EVENTS, seed=4, sizes=(10, 20))
    late = [Event(len(events) + n, b"LATE%d" % n, 1, b"v") for n in range(50)]
    made, cache = batcher(native=native, max_bytes=4096)
    first = next(iter(made.batches(events + late, HEADERS)))
    assert first[1].record_count() > 0
    assert not any(key.startswith(b"LATE") for key in cache)
