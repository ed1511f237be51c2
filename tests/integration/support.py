"""Helpers for integration tests: settings for a simulator, running a connector, reading topics back."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from cdr_stream.config import KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.kafka.clients import admin_client, connection_options
from cdr_stream.kafka.readback import committed_records, partitions_of
from cdr_stream.ops.checker import CheckResult, Expectation, IdRange, check_feed
from cdr_stream.simulator import FeedSimulator

FEED = "sim"
PASSWORD = "s1mulated-Secret"
PASSWORD_ENV = "CDR_TEST_FEED_PASSWORD"
# A test reads right after a commit returned, when the transaction's markers may still be on their way.
SETTLE_SECONDS = 5.0


def fresh_topics(prefix: str = "test") -> TopicSettings:
    """Topic names no other test uses."""
    tag = uuid.uuid4().hex[:8]
    return TopicSettings(
        events=f"{prefix}-{tag}.events",
        dead_letter=f"{prefix}-{tag}.dlq",
        state=f"{prefix}-{tag}.state",
        events_partitions=3,
    )


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
            "kafka": {
                "bootstrap_servers": kafka.bootstrap_servers,
                "commit_timeout_seconds": 20,
                # A transactional id (and presence group) per test: a process one test killed must not
                # linger in the next test's group, nor be fenced by it.
                "transactional_id_prefix": topics.events.split(".")[0],
            },
            "topics": topics.model_dump(),
            "http_port": 0,  # several connectors may run at once
        },
        {},
    )


async def create_topic(kafka: KafkaSettings, name: str, configs: dict[str, str]) -> None:
    """A topic made by hand, before the connector runs (as an operator might have)."""
    from aiokafka.admin import NewTopic

    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def delete_topics(kafka: KafkaSettings, topics: TopicSettings, *more: str) -> None:
    """Delete a test's topics (those that exist) so a long suite or soak does not fill the broker's disk."""
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
    async for records in committed_records(kafka, by_topic, settle_seconds=SETTLE_SECONDS):
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


_SECRETS = {"password", "password_env", "password_file", "passphrase", "passphrase_env", "passphrase_file"}


def write_config(
    path: Path,
    settings: Settings,
    sftp_secrets: dict[str, Any] | None = None,
    password_files: dict[str, Path] | None = None,
) -> Path:
    """The settings as a TOML file for a `cdr-stream run` process. Secrets never go in the file: a web
    service feed's password comes from the environment that `start_process` sets, or from the file
    `password_files` names for the feed; an sftp feed's from the `*_file` settings given in `sftp_secrets`."""
    lines: list[str] = []
    for feed in settings.feeds:
        values = feed.model_dump(exclude=_SECRETS | {"sftp"}, exclude_defaults=True)
        if feed.sftp is None:
            file = (password_files or {}).get(feed.name)
            secret = {"password_env": PASSWORD_ENV} if file is None else {"password_file": str(file)}
            lines += _toml_table("[[feeds]]", {**values, **secret})
        else:
            lines += _toml_table("[[feeds]]", values)
            sftp = feed.sftp.model_dump(exclude=_SECRETS, exclude_defaults=True)
            lines += _toml_table("[feeds.sftp]", {**sftp, **(sftp_secrets or {})})
    top = settings.model_dump(exclude={"feeds", "kafka", "topics"}, exclude_defaults=True)
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


# --- the connector as a process, judged by the checker ----------------------------------------------------

_PROGRESS = re.compile(r"feed (\S+) (?:committed IDs \d+\.\.|resumes after ID )(\d+)")


def logged_offset(output: str, feed: str = FEED) -> int | None:
    """The feed's offset as a connector's log last gave it (loaded at start or committed); None before."""
    found = [int(last) for name, last in _PROGRESS.findall(output) if name == feed]
    return found[-1] if found else None


@dataclass
class ConnectorProcess:
    """A `cdr-stream run` process; its output is the part of `log` written since it started."""

    process: subprocess.Popen[bytes]
    log: Path
    log_start: int

    @classmethod
    def start(cls, config: Path, log: Path) -> ConnectorProcess:
        start = log.stat().st_size if log.exists() else 0
        started = cls(start_process("run", "--config", str(config), log=log), log, start)
        _started.append(started.process)
        return started

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        with self.log.open("rb") as file:
            file.seek(self.log_start)
            return file.read().decode("utf-8", "replace")

    def tail(self, size: int = 3000) -> str:
        return self.output()[-size:]

    def offset(self, feed: str = FEED) -> int | None:
        """The feed's offset as this process last logged it (loaded at start or committed); None before."""
        return logged_offset(self.output(), feed)

    async def wait_offset(self, last_id: int, timeout: float = 90) -> None:
        """Until this process has the feed's offset at `last_id` (it fails at once if the process exits)."""
        deadline = time.monotonic() + timeout
        while (offset := self.offset()) is None or offset < last_id:
            if self.process.poll() is not None:
                raise AssertionError(f"the connector exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"offset {offset} did not reach {last_id} in {timeout:g} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        return await stop_process(self.process, signum, timeout)

    async def kill(self) -> None:
        """kill -9, and wait until it is gone."""
        await stop_process(self.process, signal.SIGKILL, 10)


_started: list[subprocess.Popen[bytes]] = []


def kill_leftovers() -> None:
    """kill -9 every connector process a test started and left running (a failed test leaves them)."""
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def check(kafka: KafkaSettings, topics: TopicSettings, expectation: Expectation | None = None) -> CheckResult:
    """The checker's verdict on the test feed's committed output."""
    return await asyncio.wait_for(check_feed(kafka, topics, FEED, expectation), 120)


async def assert_clean(kafka: KafkaSettings, topics: TopicSettings, expectation: Expectation | None) -> CheckResult:
    result = await check(kafka, topics, expectation)
    assert result.clean, result.summary()
    print(result.summary())
    return result


async def finish_and_check(
    kafka: KafkaSettings, topics: TopicSettings, sim: FeedSimulator, config: Path, log: Path
) -> CheckResult:
    """Run a connector process to the end of the feed, stop it (exit 0), and require clean output."""
    connector = ConnectorProcess.start(config, log)
    await connector.wait_offset(sim.max_id)
    assert await connector.stop() == 0, connector.tail()
    return await assert_clean(kafka, topics, IdRange(sim.config.first_id, sim.max_id))


class TransactionProbe:
    """Tells which partitions hold records of a transaction still open: their high watermark is above
    the last stable offset (what a read_committed consumer may read up to). Its two consumers stay
    connected, so one look takes milliseconds."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self._kafka = kafka
        self._topics = topics
        self._consumers: list[AIOKafkaConsumer] = []
        self._tps: list[Any] = []

    async def __aenter__(self) -> TransactionProbe:
        self._tps = await partitions_of(
            self._kafka, [self._topics.events, self._topics.dead_letter, self._topics.state]
        )
        for isolation in ("read_uncommitted", "read_committed"):
            consumer = AIOKafkaConsumer(isolation_level=isolation, **connection_options(self._kafka))
            self._consumers.append(consumer)
            await consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for consumer in self._consumers:
            await consumer.stop()

    async def open_partitions(self) -> list[str]:
        high, stable = [await consumer.end_offsets(self._tps) for consumer in self._consumers]
        return [f"{tp.topic}[{tp.partition}]" for tp in self._tps if high[tp] > stable[tp]]


async def connector_streaming(
    kafka: KafkaSettings,
    topics: TopicSettings,
    sim: FeedSimulator,
    workdir: Path,
    feed: dict[str, Any] | None = None,
    **kafka_settings: Any,
) -> ConnectorProcess:
    """A `cdr-stream run` process (transactions of 100 rows unless `feed` says otherwise), once it has
    committed something. `kafka_settings` override the test defaults (bootstrap, timeouts)."""
    settings = settings_for(sim, kafka, topics, **{"max_rows_per_transaction": 100, **(feed or {})})
    if kafka_settings:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update=kafka_settings)})
    connector = ConnectorProcess.start(write_config(workdir / "c.toml", settings), workdir / "connector.log")
    await connector.wait_offset(1)
    return connector


async def finish_clean(
    connector: ConnectorProcess, judge: KafkaSettings, topics: TopicSettings, last_id: int, timeout: float = 180
) -> CheckResult:
    """The running connector reaches `last_id`, stops with exit 0, and the checker (reading through `judge`)
    finds every ID exactly once, in order, with the offset at the last ID."""
    await connector.wait_offset(last_id, timeout=timeout)
    assert await connector.stop(timeout=15) == 0, connector.tail()
    return await assert_clean(judge, topics, IdRange(1, last_id))
