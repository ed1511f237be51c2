"""A plain feed-to-Kafka script, as a user would write it: aiohttp + orjson + confluent-kafka (librdkafka).

    CDR_BENCH_FEED_PASSWORD=... python naive_confluent.py --url URL --login LOGIN --bootstrap HOST:PORT \
        --topic EVENTS --state-topic STATE [--no-transactions]

It asks the feed for the rows after the last ID until an answer is empty. Each answer's rows go to the
events topic as they are (keyed by ID), followed by the answer's last ID on the state topic, all in one
transaction. With --no-transactions it produces the same records with acks=all and flushes after each
answer. One of the peers dev/bench/peers.py measures cdr-stream against; it validates nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
import orjson
from confluent_kafka import Producer


def produce(producer: Producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # the local queue is full: let librdkafka send some
            producer.poll(0.1)


async def main(args: argparse.Namespace) -> None:
    config = {"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5}
    if args.transactions:
        config["transactional.id"] = args.transactional_id
    producer = Producer(config)
    if args.transactions:
        producer.init_transactions()
    form = {"login": args.login, "password": os.environ["CDR_BENCH_FEED_PASSWORD"], "format": "json"}
    last_id = 0
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(args.url, data={**form, "fromid": str(last_id)}) as response:
                response.raise_for_status()
                rows = orjson.loads(await response.read())
            if not rows:
                break
            if args.transactions:
                producer.begin_transaction()
            for row in rows:
                produce(producer, args.topic, orjson.dumps(row), str(row["ID"]).encode())
                producer.poll(0)
            last_id = max(row["ID"] for row in rows)
            produce(producer, args.state_topic, orjson.dumps({"last_id": last_id}), b"feed")
            if args.transactions:
                producer.commit_transaction()
            else:
                producer.flush()
    print(f"done: last ID {last_id}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--url", "--login", "--bootstrap", "--topic", "--state-topic"):
        parser.add_argument(name, required=True)
    parser.add_argument("--transactional-id", default="naive-confluent")
    parser.add_argument("--no-transactions", dest="transactions", action="store_false")
    asyncio.run(main(parser.parse_args()))
