"""Prove that aiokafka's admin client and transactional producer work against the local broker.

Run with the project's virtualenv while the broker runs (dev/kafka/broker start):

    .venv/bin/python dev/kafka/check_transactions.py [--bootstrap 127.0.0.1:19092]

It checks, on fresh topics with random names (deleted at the end):
  * admin: create_topics (with cleanup.policy=compact), describe_configs, list_topics;
  * a transactional producer commits, aborts, commits again (and adds consumer offsets to one
    transaction, as a consume-transform-produce loop does);
  * a read_committed consumer reads to the end offsets and sees exactly the committed records,
    while a read_uncommitted one also sees the aborted ones;
  * an open transaction holds the read_committed end offset (the last stable offset) back;
  * a second producer with the same transactional_id fences the first.

Exit 0 with one PASS line, or non-zero with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, ProducerFenced, for_code

PARTITIONS = 3


class CheckFailed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def records(tag: str, count: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), f"{tag}-{i}".encode()) for i in range(count)]


async def send_all(producer: AIOKafkaProducer, topic: str, batch: Iterable[tuple[bytes, bytes]]) -> None:
    futures = []
    for k, v in batch:
        future = await producer.send(topic, value=v, key=k)
        # Mark the error as seen even if an earlier failure means we never await this one:
        # a fenced producer fails every pending send, and asyncio would log each of them.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        futures.append(future)
    await asyncio.gather(*futures)


async def read_to_end(bootstrap: str, topic: str, isolation_level: str) -> tuple[list[bytes], dict[int, int]]:
    """Read every partition from the beginning up to its end offset (for read_committed: the
    last stable offset). Returns the values seen and the end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        # Positions, not record counts, decide "at the end": commit/abort markers take offsets
        # too, so a read_committed consumer's position jumps over them without any record.
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            expect(loop.time() < deadline, f"{isolation_level} consumer did not reach {ends} in 30 s")
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for msgs in batches.values():
                values.extend(m.value for m in msgs if m.value is not None)
        return values, {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def wait_for_leaders(admin: AIOKafkaAdminClient, bootstrap: str, topics: list[str]) -> None:
    # Until the broker has applied the new topics, Metadata lacks them (UnknownTopicOrPartition)
    # and a producer would log NotLeaderForPartition.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        described = await admin.describe_topics(topics)
        if all(
            t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            break
        expect(loop.time() < deadline, f"no leaders for {topics} after 15 s: {described}")
        await asyncio.sleep(0.1)
    # Its metadata cache shows the leader just before the partitions are led; ListOffsets
    # (which aiokafka retries quietly) only answers once they are.
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def check_admin(admin: AIOKafkaAdminClient, bootstrap: str, data_topic: str, state_topic: str) -> None:
    response = await admin.create_topics(
        [
            NewTopic(data_topic, num_partitions=PARTITIONS, replication_factor=1),
            NewTopic(
                state_topic,
                num_partitions=1,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            ),
        ]
    )
    # create_topics does not raise on a per-topic error: read the codes.
    for name, code, *_ in response.topic_errors:
        expect(code == 0, f"create_topics({name}) failed: {for_code(code).__name__}")

    # The answer comes once the controller has committed the topics; the broker applies them a
    # few milliseconds later, so wait before expecting to see them.
    await wait_for_leaders(admin, bootstrap, [data_topic, state_topic])
    topics = await admin.list_topics()
    expect({data_topic, state_topic} <= set(topics), f"list_topics misses the new topics: {topics}")

    [described] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, state_topic, configs={"cleanup.policy": None})]
    )
    [(code, message, _type, name, entries)] = described.resources
    expect(code == 0, f"describe_configs({name}) failed: {for_code(code).__name__} {message}")
    policy = {entry[0]: entry[1] for entry in entries}.get("cleanup.policy")
    expect(policy == "compact", f"cleanup.policy of {state_topic} is {policy!r}, not 'compact'")


async def check_transactions(bootstrap: str, topic: str) -> str:
    txn_id = f"cdr-check-txn-{uuid.uuid4().hex[:8]}"
    group = f"cdr-check-group-{uuid.uuid4().hex[:8]}"
    first, aborted, second, fenced_batch, third = (
        records("first", 10),
        records("aborted", 7),
        records("second", 5),
        records("fenced", 3),
        records("third", 4),
    )

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
    await producer.start()
    try:
        async with producer.transaction():
            await send_all(producer, topic, first)

        await producer.begin_transaction()
        await send_all(producer, topic, aborted)
        await producer.abort_transaction()

        async with producer.transaction():
            await send_all(producer, topic, second)
            # Consumer offsets committed atomically with the records (TxnOffsetCommit).
            await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 1}, group)

        committed, ends = await read_to_end(bootstrap, topic, "read_committed")
        want = sorted(v for _, v in first + second)
        expect(sorted(committed) == want, f"read_committed saw {sorted(committed)}, want {want}")
        everything, _ = await read_to_end(bootstrap, topic, "read_uncommitted")
        want_all = sorted(v for _, v in first + aborted + second)
        expect(sorted(everything) == want_all, "read_uncommitted does not see the aborted records")
        # 3 transactions wrote one marker per partition each: end offsets count them.
        expect(sum(ends.values()) == len(first + aborted + second) + 3 * PARTITIONS, f"end offsets {ends}")

        # A second producer with the same transactional_id bumps the epoch and fences the first.
        usurper = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
        await usurper.start()
        try:
            fenced_by: str | None = None
            try:
                async with producer.transaction():
                    await send_all(producer, topic, fenced_batch)
            except (ProducerFenced, KafkaError) as exc:
                fenced_by = type(exc).__name__
            expect(fenced_by is not None, "the first producer was not fenced by the second")

            # An open transaction holds the last stable offset back for read_committed.
            await usurper.begin_transaction()
            await send_all(usurper, topic, third)
            _, open_ends = await read_to_end(bootstrap, topic, "read_committed")
            expect(open_ends == ends, f"open transaction moved the LSO: {ends} -> {open_ends}")
            _, high_watermarks = await read_to_end(bootstrap, topic, "read_uncommitted")
            expect(sum(high_watermarks.values()) == sum(ends.values()) + len(third), "open records missing")
            await usurper.commit_transaction()
        finally:
            await usurper.stop()

        committed, _ = await read_to_end(bootstrap, topic, "read_committed")
        want = sorted(v for _, v in first + second + third)
        expect(sorted(committed) == want, "after fencing, read_committed does not see exactly the commits")

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            got = {tp: meta.offset for tp, meta in offsets.items()}
            expect(got == {TopicPartition(topic, 0): 1}, f"transactional group offsets are {got}")
        finally:
            await admin.close()
        return fenced_by
    finally:
        with contextlib.suppress(KafkaError):  # a fenced producer may complain while closing
            await producer.stop()


def quiet_fenced(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    # Once fenced, aiokafka's sender task dies and fails its internal futures (batch, transaction
    # waiter) that nobody awaits; asyncio would log each as "Future exception was never
    # retrieved". The fencing is expected here, so only that noise is dropped.
    if isinstance(context.get("exception"), ProducerFenced):
        return
    loop.default_exception_handler(context)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=f"127.0.0.1:{os.environ.get('KAFKA_PORT', '19092')}",
        help="bootstrap address (default 127.0.0.1:$KAFKA_PORT or 127.0.0.1:19092)",
    )
    args = parser.parse_args()
    asyncio.get_running_loop().set_exception_handler(quiet_fenced)

    suffix = uuid.uuid4().hex[:8]
    data_topic, state_topic = f"cdr-check-data-{suffix}", f"cdr-check-state-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await check_admin(admin, args.bootstrap, data_topic, state_topic)
        fenced_by = await asyncio.wait_for(check_transactions(args.bootstrap, data_topic), 120)
    finally:
        with contextlib.suppress(KafkaError):
            await admin.delete_topics([data_topic, state_topic])
        await admin.close()
    print(
        f"PASS: aiokafka against {args.bootstrap}: create_topics (compact) + describe_configs + "
        f"list_topics; transactions commit/abort/commit + send_offsets_to_transaction; read_committed "
        f"sees exactly the committed records; same transactional_id fences the first ({fenced_by})"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except CheckFailed as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        sys.exit(1)
    except (KafkaError, OSError, TimeoutError) as exc:
        print(f"FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
