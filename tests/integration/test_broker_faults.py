"""Broker faults under a running connector process: a clean restart and a kill -9 of the broker during the
catch-up, the broker unreachable for 60 s, and the broker paused (SIGSTOP) while a commit is in flight.

These run on a private broker (KAFKA_INSTANCE=faults, on KAFKA_PORT+100/+101), so stopping, killing and
pausing it disturbs no other test. In every case the connector must keep running (never exit), and the
checker must find every ID exactly once, in order per account, with the offset at the last ID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.ops.checker import IdRange
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.conftest import BROKER
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    assert_clean,
    delete_topics,
    fresh_topics,
    settings_for,
    write_config,
)

pytestmark = pytest.mark.kafka

_BASE_PORT = int(os.environ.get("KAFKA_PORT", "19092")) + 100


class PrivateBroker:
    """A broker of our own, driven through dev/kafka/broker with KAFKA_INSTANCE."""

    def __init__(self) -> None:
        self.env = dict(
            os.environ,
            KAFKA_INSTANCE="faults",
            KAFKA_PORT=str(_BASE_PORT),
            KAFKA_CONTROLLER_PORT=str(_BASE_PORT + 1),
            KAFKA_HEAP="-Xms256m -Xmx512m",
        )
        self.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_BASE_PORT}")

    def _run(self, command: str) -> str:
        done = subprocess.run(
            [str(BROKER), command], capture_output=True, text=True, env=self.env, timeout=180, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"broker {command} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        return done.stdout.strip()

    async def start(self) -> None:
        await asyncio.to_thread(self._run, "start")

    async def stop(self) -> None:
        await asyncio.to_thread(self._run, "stop")

    def pid(self) -> int:
        return int(self._run("pid"))

    async def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # noqa: ASYNC110 - a pid has no event
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[PrivateBroker]:
    broker = PrivateBroker()
    broker._run("start")
    yield broker
    broker._run("stop")


@pytest.fixture
async def broker(private_broker: PrivateBroker) -> AsyncIterator[PrivateBroker]:
    """The private broker, running at the start of the test and again after it."""
    await private_broker.start()
    yield private_broker
    await private_broker.start()


@pytest.fixture
async def private_topics(broker: PrivateBroker) -> AsyncIterator[TopicSettings]:
    topics = fresh_topics()
    yield topics
    await delete_topics(broker.kafka, topics)


async def streaming(
    broker: PrivateBroker, topics: TopicSettings, sim: FeedSimulator, tmp_path: Path, **kafka: float
) -> ConnectorProcess:
    """A connector process on the private broker, once it has committed something."""
    settings = settings_for(sim, broker.kafka, topics, max_rows_per_transaction=100)
    if kafka:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update=kafka)})
    connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
    await connector.wait_offset(1)
    return connector


async def finish(connector: ConnectorProcess, broker: PrivateBroker, topics: TopicSettings, last_id: int) -> None:
    await connector.wait_offset(last_id, timeout=180)
    assert await connector.stop(timeout=15) == 0, connector.tail()
    await assert_clean(broker.kafka, topics, IdRange(1, last_id))


def slow_feed() -> SimulatorConfig:
    """A catch-up of some 8 s: long enough for a fault to land in the middle of it."""
    return SimulatorConfig(password=PASSWORD, records=16_000, page_size=500, latency_ms=150, invalid_rate=0.01)


@pytest.mark.parametrize("how", ["clean stop", "kill -9"])
async def test_a_broker_restart_during_catch_up_loses_nothing(
    broker: PrivateBroker, private_topics: TopicSettings, tmp_path: Path, how: str
) -> None:
    async with FeedSimulator(slow_feed()) as sim:
        connector = await streaming(broker, private_topics, sim, tmp_path)
        if how == "kill -9":
            await broker.kill()
            await asyncio.sleep(1)
        else:
            await broker.stop()
        await broker.start()  # after a kill -9 it waits out the dead broker's registration (about 6 s)
        assert connector.process.poll() is None, connector.tail()
        assert (connector.offset() or 0) < sim.max_id, "the restart must land in the catch-up"
        await finish(connector, broker, private_topics, sim.max_id)


async def test_the_broker_unreachable_for_60_s_is_waited_out(
    broker: PrivateBroker, private_topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(slow_feed()) as sim:
        connector = await streaming(broker, private_topics, sim, tmp_path)
        await broker.stop()
        down_from = len(connector.output())
        started = time.monotonic()
        while time.monotonic() - started < 60:  # the requirement: a minute without Kafka
            assert connector.process.poll() is None, f"the connector exited while Kafka was away:\n{connector.tail()}"
            await asyncio.sleep(1)
        during = connector.output()[down_from:]
        assert "retry" in during, f"no retries were logged while Kafka was away:\n{during[-2000:]}"
        # Regression: aiokafka logged every failed connection attempt, some 7,000 ERROR lines a minute.
        print(f"{during.count(chr(10))} log lines while Kafka was away for 60 s")
        assert during.count("\n") < 500, f"{during.count(chr(10))} log lines in a minute:\n{during[-3000:]}"
        await broker.start()
        await finish(connector, broker, private_topics, sim.max_id)


async def test_a_broker_paused_during_a_commit_times_it_out_and_loses_nothing(
    broker: PrivateBroker, private_topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(slow_feed()) as sim:
        connector = await streaming(broker, private_topics, sim, tmp_path, commit_timeout_seconds=1.0)
        pid = broker.pid()
        paused_from = len(connector.output())
        os.kill(pid, signal.SIGSTOP)  # commits in flight now hang
        try:
            await asyncio.sleep(3)
        finally:
            os.kill(pid, signal.SIGCONT)
        await connector.wait_offset((connector.offset() or 0) + 1, timeout=60)
        assert "(commit_timeout)" in connector.output()[paused_from:], connector.tail()
        await finish(connector, broker, private_topics, sim.max_id)
