"""Helpers for integration tests: settings for a simulator, running a connector, reading topics back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cdr_stream.config import KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.readback import committed_records
from cdr_stream.simulator import FeedSimulator

FEED = "sim"
PASSWORD = "s1mulated-Secret"


def settings_for(sim: FeedSimulator, kafka: KafkaSettings, topics: TopicSettings, **feed: Any) -> Settings:
    values: dict[str, Any] = {
        "name": FEED,
        "url": sim.url,
        "login": sim.config.login,
        "password": PASSWORD,
        "poll_interval_seconds": 0.2,
        "max_rows_per_transaction": 500,
        "backoff_initial_seconds": 0.1,
        "backoff_max_seconds": 1.0,
    }
    values.update(feed)
    return parse_settings(
        {
            "feeds": [values],
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "commit_timeout_seconds": 20},
            "topics": topics.model_dump(),
            "http_port": 0,  # several connectors may run at once
        },
        {},
    )


async def create_topic(kafka: KafkaSettings, name: str, configs: dict[str, str]) -> None:
    """A topic made by hand, before the connector runs (as an operator might have)."""
    from aiokafka.admin import NewTopic

    from cdr_stream.kafka_clients import admin_client

    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


def unique_topics() -> TopicSettings:
    """A fresh set of topic names, so a test never reads what another one wrote."""
    tag = uuid.uuid4().hex[:8]
    return TopicSettings(
        events=f"test-{tag}.events", dead_letter=f"test-{tag}.dlq", state=f"test-{tag}.state", events_partitions=3
    )


async def delete_topics(kafka: KafkaSettings, topics: TopicSettings, *more: str) -> None:
    """Delete a test's topics (those that exist) so a long suite does not fill the broker's disk."""
    from cdr_stream.kafka_clients import admin_client

    admin = admin_client(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [name for name in (topics.events, topics.dead_letter, topics.state, *more) if name in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_until_caught_up(settings: Settings, sim: FeedSimulator, timeout: float = 120.0) -> Connector:
    """Run a connector in this process until its offset reaches the simulator's last ID, then stop it."""
    connector = Connector(settings)
    await connector.start()
    try:
        await wait_for(
            lambda: connector.pollers[0].last_id == sim.max_id or connector.stopping,
            timeout,
            f"the connector to commit up to ID {sim.max_id}",
        )
    finally:
        await connector.stop()
    await connector.wait()
    return connector


@dataclass
class Published:
    """What a read_committed consumer finds on the connector's topics."""

    events: list[Any] = field(default_factory=list)
    dead_letters: list[Any] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)

    def event_ids(self) -> list[int]:
        return [orjson.loads(record.value)["id"] for record in self.events]

    def dead_letter_ids(self) -> list[int | None]:
        return [orjson.loads(record.value)["id"] for record in self.dead_letters]

    def all_ids(self) -> list[int | None]:
        return self.event_ids() + self.dead_letter_ids()

    def last_state(self) -> dict[str, Any]:
        return dict(orjson.loads(self.states[-1].value))


async def read_published(kafka: KafkaSettings, topics: TopicSettings) -> Published:
    published = Published()
    by_topic = {
        topics.events: published.events,
        topics.dead_letter: published.dead_letters,
        topics.state: published.states,
    }
    async for records in committed_records(kafka, by_topic):
        for record in records:
            by_topic[record.topic].append(record)
    for records in by_topic.values():
        records.sort(key=lambda record: (record.partition, record.offset))
    return published


def write_config(path: Path, settings: Settings) -> Path:
    """The settings as a TOML file for a `cdr-stream run` process (password through the environment)."""
    feed = settings.feeds[0]
    lines = [
        f"http_port = {settings.http_port}",
        "[[feeds]]",
        f'name = "{feed.name}"',
        f'url = "{feed.url}"',
        f'login = "{feed.login}"',
        'password_env = "CDR_TEST_FEED_PASSWORD"',
        f"poll_interval_seconds = {feed.poll_interval_seconds}",
        f"max_rows_per_transaction = {feed.max_rows_per_transaction}",
        f"backoff_initial_seconds = {feed.backoff_initial_seconds}",
        f"backoff_max_seconds = {feed.backoff_max_seconds}",
    ]
    return write_toml(path, lines, settings)


def write_toml(path: Path, feed_lines: list[str], settings: Settings) -> Path:
    """A configuration file: the feed's TOML lines, then the settings' Kafka and topics tables."""
    lines = [
        *feed_lines,
        "[kafka]",
        f'bootstrap_servers = "{settings.kafka.bootstrap_servers}"',
        "[topics]",
        f'events = "{settings.topics.events}"',
        f'dead_letter = "{settings.topics.dead_letter}"',
        f'state = "{settings.topics.state}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_process(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """`cdr-stream ARGS` as a real process of its own, output to `log`."""
    env = dict(os.environ, CDR_TEST_FEED_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1")
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cdr_stream.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


async def stop_process(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal the process and wait for its exit without blocking the loop (the simulator runs in it)."""
    if process.poll() is None:
        process.send_signal(signum)
    return await asyncio.to_thread(process.wait, timeout)
