"""A plain feed-to-Kafka script, as a user would write it: aiohttp + orjson + aiokafka, `send` per row.

    CDR_BENCH_FEED_PASSWORD=... python naive_aiokafka.py --url URL --login LOGIN --bootstrap HOST:PORT \
        --topic EVENTS --state-topic STATE

It asks the feed for the rows after the last ID until an answer is empty, and sends each row to the
events topic as it is (keyed by ID) with acks=all and no transactions, then the answer's last ID to
the state topic, and waits for the answer's records to be acknowledged before the next request. One of
the peers dev/bench/peers.py measures cdr-stream against; it validates nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer


async def main(args: argparse.Namespace) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    form = {"login": args.login, "password": os.environ["CDR_BENCH_FEED_PASSWORD"], "format": "json"}
    last_id = 0
    try:
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.post(args.url, data={**form, "fromid": str(last_id)}) as response:
                    response.raise_for_status()
                    rows = orjson.loads(await response.read())
                if not rows:
                    break
                for row in rows:
                    await producer.send(args.topic, orjson.dumps(row), key=str(row["ID"]).encode())
                last_id = max(row["ID"] for row in rows)
                await producer.send(args.state_topic, orjson.dumps({"last_id": last_id}), key=b"feed")
                await producer.flush()
    finally:
        await producer.stop()
    print(f"done: last ID {last_id}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--url", "--login", "--bootstrap", "--topic", "--state-topic"):
        parser.add_argument(name, required=True)
    asyncio.run(main(parser.parse_args()))
