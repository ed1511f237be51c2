"""The connector as a real process: kill -9, SIGTERM, a second instance, and the operator's commands."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector, ConnectorError
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from cdr_stream.state import read_offsets
from tests.integration.support import (
    FEED,
    PASSWORD,
    read_published,
    settings_for,
    start_process,
    stop_process,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


async def stored_offset(kafka: KafkaSettings, topics: TopicSettings) -> int:
    try:
        stored = (await read_offsets(kafka, topics.state, timeout=10)).get(FEED)
    except Exception:  # the topic may not exist yet while the process starts
        return -1
    return stored.last_id if stored else 0


async def wait_offset(kafka: KafkaSettings, topics: TopicSettings, at_least: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while (offset := await stored_offset(kafka, topics)) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"offset {offset} did not reach {at_least} in {timeout:g} s")
        await asyncio.sleep(0.2)
    return offset


async def assert_exactly_once(kafka: KafkaSettings, topics: TopicSettings, expected: set[int]) -> None:
    published = await read_published(kafka, topics)
    ids = published.all_ids()
    duplicates = len(ids) - len(set(ids))
    missing = expected - set(ids)
    assert duplicates == 0, f"{duplicates} IDs published twice"
    assert not missing, f"{len(missing)} IDs missing, e.g. {sorted(missing)[:5]}"
    assert published.last_state()["last_id"] == max(expected)


async def finish_and_check(
    kafka: KafkaSettings, topics: TopicSettings, sim: FeedSimulator, config: Path, log: Path
) -> None:
    """Run the connector process to the end of the feed, stop it cleanly, and check the output."""
    process = start_process("run", "--config", str(config), log=log)
    await wait_offset(kafka, topics, sim.max_id)
    assert await stop_process(process) == 0, log.read_text()[-2000:]
    await assert_exactly_once(kafka, topics, set(sim.ids()))


async def test_kill_9_in_the_middle_of_pages_leaves_no_duplicate_and_no_gap(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill -9 seed: {seed}")  # replays the same kill moments
    rng = random.Random(seed)
    config = SimulatorConfig(password=PASSWORD, records=12_000, page_size=1500, invalid_rate=0.01, latency_ms=20)
    async with FeedSimulator(config) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics, max_rows_per_transaction=150))
        log = tmp_path / "connector.log"
        kills = 0
        for _ in range(3):
            process = start_process("run", "--config", str(path), log=log)
            offset = await wait_offset(kafka, topics, 1)
            if offset >= sim.max_id:
                await stop_process(process)
                break
            await asyncio.sleep(rng.uniform(0.0, 0.4))  # lands inside a transaction most of the time
            process.kill()
            await asyncio.to_thread(process.wait, 10)
            kills += 1
        assert kills >= 2, "the feed was caught up before the process could be killed"
        await finish_and_check(kafka, topics, sim, path, log)


async def test_sigterm_during_catch_up_exits_0_promptly_and_loses_nothing(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=8000, page_size=2000, latency_ms=10)
    async with FeedSimulator(config) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics, max_rows_per_transaction=200))
        log = tmp_path / "connector.log"
        process = start_process("run", "--config", str(path), log=log)
        offset = await wait_offset(kafka, topics, 1)
        assert offset < sim.max_id
        started = time.monotonic()
        assert await stop_process(process, signal.SIGTERM, timeout=10) == 0, log.read_text()[-2000:]
        assert time.monotonic() - started < 10
        assert "connector stopped" in log.read_text()
        await finish_and_check(kafka, topics, sim, path, log)


async def test_a_second_instance_fences_the_first_and_output_stays_exactly_once(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=6000, page_size=1000, latency_ms=30)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, max_rows_per_transaction=100)
        first = Connector(settings)
        await first.start()
        await wait_for(lambda: (first.pollers[0].last_id or 0) > 0, 60, "the first instance to commit")
        second = Connector(settings)
        await second.start()
        # A fenced instance learns it at its next commit, so give both new rows to commit.
        sim.add_records(3000)
        with pytest.raises(ConnectorError, match="another instance took over"):
            await asyncio.wait_for(first.wait(), 60)
        await first.stop()
        await wait_for(lambda: second.pollers[0].last_id == sim.max_id, 120, "the second instance to catch up")
        await second.stop()
        expected = set(sim.ids())
    await assert_exactly_once(kafka, topics, expected)


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
        assert (await read_offsets(kafka, topics.state))[FEED].last_id == sim.max_id

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
        assert (await read_offsets(kafka, topics.state))[FEED].last_id == 120


async def test_sigterm_while_the_feed_is_slow_to_answer_exits_at_once(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    from cdr_stream.presence import running_members

    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=100, latency_ms=60_000)) as sim:
        path = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics))
        log = tmp_path / "connector.log"
        process = start_process("run", "--config", str(path), log=log)
        deadline = time.monotonic() + 60
        while not await running_members(kafka, FEED):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the first query is now waiting on the feed's answer
        started = time.monotonic()
        assert await stop_process(process, signal.SIGTERM, timeout=10) == 0, log.read_text()[-2000:]
        assert time.monotonic() - started < 3, "a stop must not wait for a slow feed answer"
    assert await stored_offset(kafka, topics) == 0


async def test_a_commit_that_hangs_times_out_rebuilds_the_producer_and_loses_nothing(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    import os

    from cdr_stream.progress import ProgressLog
    from tests.integration.conftest import BROKER

    class Recorder(ProgressLog):
        def __init__(self) -> None:
            super().__init__()
            self.reasons: list[str] = []

        def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
            self.reasons.append(reason)
            super().poll_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)

    pid_text = await asyncio.to_thread(
        subprocess.run, [str(BROKER), "pid"], capture_output=True, text=True, check=True, timeout=30
    )
    broker_pid = int(pid_text.stdout.strip())
    config = SimulatorConfig(password=PASSWORD, records=30_000, page_size=3000)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, max_rows_per_transaction=300)
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"commit_timeout_seconds": 1.0})}
        )
        recorder = Recorder()
        connector = Connector(settings, observer=recorder)
        await connector.start()
        try:
            await wait_for(lambda: (connector.pollers[0].last_id or 0) > 0, 60, "a first commit")
            os.kill(broker_pid, signal.SIGSTOP)  # commits in flight now hang
            try:
                await asyncio.sleep(3)
            finally:
                os.kill(broker_pid, signal.SIGCONT)
            await wait_for(lambda: connector.pollers[0].last_id == sim.max_id, 180, "catch-up after the pause")
        finally:
            await connector.stop()
        expected = set(sim.ids())
    assert "commit_timeout" in recorder.reasons, recorder.reasons
    await assert_exactly_once(kafka, topics, expected)
