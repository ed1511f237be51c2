"""Helpers for integration tests: settings for a simulator, running a connector, reading topics back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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
PASSWORD_ENV = "CDR_TEST_FEED_PASSWORD"


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


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(str(value)).decode()  # a JSON string is a valid TOML basic string


def _toml_table(header: str, values: dict[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None)]


def write_config(path: Path, settings: Settings) -> Path:
    """The settings as a TOML file for a `cdr-stream run` process; the feed password comes from the
    environment that `start_process` sets, never from the file."""
    lines: list[str] = []
    secrets = {"password", "password_env", "password_file"}
    for feed in settings.feeds:
        values = feed.model_dump(exclude=secrets, exclude_defaults=True)
        lines += _toml_table("[[feeds]]", {**values, "password_env": PASSWORD_ENV})
    top = settings.model_dump(include={"log_level", "shutdown_timeout_seconds"}, exclude_defaults=True)
    lines[:0] = [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    lines += _toml_table("[kafka]", settings.kafka.model_dump(exclude={"sasl_password"}, exclude_defaults=True))
    lines += _toml_table("[topics]", settings.topics.model_dump(exclude_defaults=True))
    path.write_text("\n".join(lines) + "\n")
    return path


def start_process(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """`cdr-stream ARGS` as a real process of its own, output to `log`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDR_STREAM_")}
    env.update({PASSWORD_ENV: PASSWORD, "PYTHONUNBUFFERED": "1"})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cdr_stream.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


async def stop_process(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal the process and wait for its exit without blocking the loop (the simulator runs in it)."""
    if process.poll() is None:
        process.send_signal(signum)
    return await asyncio.to_thread(process.wait, timeout)
