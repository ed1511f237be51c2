"""The connector as a real process: SIGTERM, a second instance (a zombie), a restart after kill -9, and the
operator's commands. Every run that streams is judged by the checker. kill -9 at random moments has its
own file (test_kill.py), broker faults too (test_broker_faults.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdr_stream.commands.common import Exit
from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector
from cdr_stream.kafka.state import read_offsets
from cdr_stream.ops.checker import IdRange
from cdr_stream.pipeline.poller import RIVAL_CHECK_SECONDS
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    FEED,
    PASSWORD,
    SETTLE_SECONDS,
    ConnectorProcess,
    assert_clean,
    finish_and_check,
    settings_for,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


def fenced_line(topics: TopicSettings) -> str:
    return f"another instance took over transactional id '{topics.events.split('.')[0]}-{FEED}'; this one stops"


async def test_sigterm_during_catch_up_exits_0_within_10_s_and_loses_nothing(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=8000, page_size=2000, latency_ms=10)
    async with FeedSimulator(config) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics, max_rows_per_transaction=200))
        log = tmp_path / "connector.log"
        connector = ConnectorProcess.start(path, log)
        await connector.wait_offset(1)
        started = time.monotonic()
        assert await connector.stop(signal.SIGTERM, timeout=10) == 0, connector.tail()
        print(f"SIGTERM during the catch-up: exit 0 after {time.monotonic() - started:.1f} s")
        assert time.monotonic() - started < 10
        assert "connector stopped" in connector.output()
        stopped_at = connector.offset()
        assert stopped_at is not None and stopped_at < sim.max_id, "the stop must land during the catch-up"
        await assert_clean(kafka, topics, IdRange(1, stopped_at))
        await finish_and_check(kafka, topics, sim, path, log)


async def test_a_second_instance_fences_the_first_during_catch_up_which_exits_3(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=20_000, page_size=500, latency_ms=30)
    async with FeedSimulator(config) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics, max_rows_per_transaction=100))
        first = ConnectorProcess.start(path, tmp_path / "first.log")
        await first.wait_offset(1)
        second = ConnectorProcess.start(path, tmp_path / "second.log")
        # The first learns it was fenced at its next commit, mid catch-up.
        assert await asyncio.to_thread(first.process.wait, 60) == Exit.FENCED, first.tail()
        assert fenced_line(topics) in first.output()
        assert (first.offset() or 0) < sim.max_id
        await second.wait_offset(sim.max_id, timeout=120)
        assert await second.stop() == 0, second.tail()
        await assert_clean(kafka, topics, IdRange(1, sim.max_id))


async def test_an_idle_fenced_instance_stops_without_waiting_for_new_rows(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    # Regression: an idle zombie only learned it was fenced at its next commit, i.e. when rows arrived.
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=300, page_size=100)) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics))
        first = ConnectorProcess.start(path, tmp_path / "first.log")
        await first.wait_offset(sim.max_id)
        second = ConnectorProcess.start(path, tmp_path / "second.log")
        await second.wait_offset(sim.max_id)  # fenced the first, has nothing to do
        fenced_at = time.monotonic()
        limit = 2 * RIVAL_CHECK_SECONDS + 10  # a check to see the second member, one more, and slack
        assert await asyncio.to_thread(first.process.wait, limit) == Exit.FENCED, first.tail()
        print(f"the idle zombie stopped {time.monotonic() - fenced_at:.1f} s after it was fenced")
        assert fenced_line(topics) in first.output()
        assert second.process.poll() is None, second.tail()
        sim.add_records(50)
        await second.wait_offset(sim.max_id)
        assert await second.stop() == 0, second.tail()
        await assert_clean(kafka, topics, IdRange(1, sim.max_id))


async def test_a_restart_after_kill_9_resumes_without_waiting_for_the_dead_instance(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    # Regression: the restarted connector joined the presence group before it streamed, and the join
    # waited until the killed member's session expired (10 s).
    config = SimulatorConfig(password=PASSWORD, records=30_000, page_size=500, latency_ms=20)
    async with FeedSimulator(config) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics, max_rows_per_transaction=100))
        log = tmp_path / "connector.log"
        victim = ConnectorProcess.start(path, log)
        await victim.wait_offset(500)
        await victim.kill()
        killed_at = victim.offset() or 0
        started = time.monotonic()
        successor = ConnectorProcess.start(path, log)
        await successor.wait_offset(killed_at + 1, timeout=30)
        resumed = time.monotonic() - started
        print(f"the restart after kill -9 resumed {resumed:.1f} s after it started")
        assert resumed < 6, f"the restart took {resumed:.1f} s to resume:\n{successor.tail()}"
        await successor.wait_offset(sim.max_id, timeout=120)
        assert await successor.stop() == 0
        await assert_clean(kafka, topics, IdRange(1, sim.max_id))


async def test_state_set_and_show_and_refusal_while_running(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=300, page_size=100)) as sim:
        settings = settings_for(sim, kafka, topics)
        path = write_config(tmp_path / "c.toml", settings)
        env_run = [sys.executable, "-m", "cdr_stream.cli"]
        env = {"CDR_TEST_FEED_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}

        running = Connector(settings)
        await running.start()
        await wait_for(lambda: running.pollers[0].last_id == sim.max_id, 60, "catch-up")
        from cdr_stream.kafka.presence import running_members

        # The presence member joins in the background; the refusal needs it to be there.
        deadline = time.monotonic() + 30
        while not await running_members(settings.kafka, FEED):
            assert time.monotonic() < deadline, "the running connector never showed in its presence group"
            await asyncio.sleep(0.2)
        refused = await asyncio.to_thread(
            subprocess.run,
            [*env_run, "state", "set", "--config", str(path), "--feed", FEED, "--last-id", "7"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert refused.returncode == 1, refused.stderr
        assert "refused" in refused.stderr and "running" in refused.stderr
        await running.stop()
        assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id == sim.max_id

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            # A stopped member leaves the group at once; retry briefly while the broker catches up.
            for _ in range(30):
                done = await asyncio.to_thread(
                    subprocess.run,
                    [*env_run, "state", *args, "--config", str(path)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                )
                if done.returncode == 0 or "refused" not in done.stderr:
                    return done
                await asyncio.sleep(1)
            return done

        changed = await cli("set", "--feed", FEED, "--last-id", "120")
        assert changed.returncode == 0, changed.stderr
        assert f"{sim.max_id} -> 120" in changed.stdout
        shown = await cli("show")
        assert shown.returncode == 0, shown.stderr
        assert FEED in shown.stdout and " 120 " in shown.stdout
        assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id == 120


async def test_sigterm_while_the_feed_is_slow_to_answer_exits_at_once(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    from cdr_stream.kafka.presence import running_members

    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=100, latency_ms=60_000)) as sim:
        settings = settings_for(sim, kafka, topics)
        connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
        deadline = time.monotonic() + 60
        while not await running_members(settings.kafka, FEED):
            assert time.monotonic() < deadline, connector.tail()
            await asyncio.sleep(0.2)
        await connector.wait_offset(0)
        await asyncio.sleep(1.0)  # the first query is now waiting on the feed's answer
        started = time.monotonic()
        assert await connector.stop(signal.SIGTERM, timeout=10) == 0, connector.tail()
        assert time.monotonic() - started < 3, "a stop must not wait for a slow feed answer"
    result = await assert_clean(kafka, topics, None)
    assert result.state_last_id is None and result.distinct_ids == 0
