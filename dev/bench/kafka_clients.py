"""What the Kafka client costs a record: aiokafka's batch API (the connector's writer) against librdkafka
(confluent-kafka), writing the records the connector writes.

    .venv/bin/python dev/bench/kafka_clients.py [--records 500000] [--no-headers]

Both write the same events (600 bytes, 50 account keys, a timestamp, the connector's two headers) to the
same 6 partitions of a fresh topic on the local broker, in transactions of 10,000 with one state record
each, acks=all; each client runs in a process of its own. Printed: records/s and the process's CPU (all
its threads: librdkafka works in its own) per record. The question it answers: whether a writer on
librdkafka would take CPU off a record.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import time
import uuid

import catchup
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_PARTITIONS = 6
_TRANSACTION = 10_000
_VALUE = b"x" * 600
_KEYS = [f"{8_000_000 + n}".encode() for n in range(50)]
_TIMESTAMP_MS = 1_700_000_000_000


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, _PARTITIONS, 1)])
    finally:
        await admin.close()


def _headers(with_headers: bool) -> list[tuple[str, bytes]]:
    return [("cdr_schema_version", b"2"), ("cdr_feed", b"bench")] if with_headers else []


async def _aiokafka(bootstrap: str, topic: str, records: int, with_headers: bool) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{topic}-aiokafka",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=1024 * 1024,
    )
    await producer.start()
    headers = _headers(with_headers)
    try:
        for start in range(0, records, _TRANSACTION):
            await producer.begin_transaction()
            batches: dict[int, object] = {}
            deliveries = []
            for n in range(start, min(start + _TRANSACTION, records)):
                partition = n % _PARTITIONS
                batch = batches.get(partition) or producer.create_batch()
                if batch.append(key=_KEYS[n % 50], value=_VALUE, timestamp=_TIMESTAMP_MS, headers=headers) is None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=_KEYS[n % 50], value=_VALUE, timestamp=_TIMESTAMP_MS, headers=headers)
                batches[partition] = batch
            for partition, batch in batches.items():
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            deliveries.append(await producer.send(topic, b"state", key=b"feed", partition=0))
            await asyncio.gather(*deliveries)
            await producer.commit_transaction()
    finally:
        await producer.stop()


def _librdkafka(bootstrap: str, topic: str, records: int, with_headers: bool) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{topic}-librdkafka",
            "acks": "all",
            "linger.ms": 5,
            "delivery.report.only.error": True,
        }
    )
    producer.init_transactions(30)
    headers = _headers(with_headers)
    for start in range(0, records, _TRANSACTION):
        producer.begin_transaction()
        for n in range(start, min(start + _TRANSACTION, records)):
            producer.produce(
                topic, _VALUE, _KEYS[n % 50], partition=n % _PARTITIONS, timestamp=_TIMESTAMP_MS, headers=headers
            )
        producer.produce(topic, b"state", b"feed", partition=0)
        producer.commit_transaction(30)
        producer.poll(0)


def _child(
    client: str, bootstrap: str, topic: str, records: int, with_headers: bool, out: multiprocessing.Queue
) -> None:
    began, cpu = time.monotonic(), time.process_time()
    if client == "aiokafka":
        asyncio.run(_aiokafka(bootstrap, topic, records, with_headers))
    else:
        _librdkafka(bootstrap, topic, records, with_headers)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((time.monotonic() - began, time.process_time() - cpu, usage.ru_maxrss / 1024))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--no-headers", action="store_true", help="records without the connector's headers")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of both clients")
    args = parser.parse_args()
    bootstrap = catchup.start_broker()
    with_headers = not args.no_headers
    print(f"{args.records:,} records of {len(_VALUE)} bytes, headers {'on' if with_headers else 'off'}", flush=True)
    print(f"{'client':<12} {'records/s':>10} {'CPU us/record':>14} {'peak RSS MB':>12}", flush=True)
    for _ in range(args.repeat):
        for client in ("aiokafka", "librdkafka"):
            topic = f"bench-clients-{uuid.uuid4().hex[:8]}"
            asyncio.run(_create_topic(bootstrap, topic))
            queue: multiprocessing.Queue = multiprocessing.Queue()
            child = multiprocessing.Process(
                target=_child, args=(client, bootstrap, topic, args.records, with_headers, queue)
            )
            child.start()
            seconds, cpu, rss = queue.get()
            child.join()
            asyncio.run(catchup.delete_topics(bootstrap, [topic]))
            print(
                f"{client:<12} {args.records / seconds:>10,.0f} {cpu / args.records * 1e6:>14.2f} {rss:>12.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
