"""Many feeds in one `cdr-stream run` process: a feed that fails for good reasons of its own (a refused
login, fencing by another instance) is `failed`, and only it; its siblings deliver exactly once. A
failed feed reads its password file again at each attempt and heals without a restart; the process
exits non-zero only when every feed has stopped, with one line per feed. Judged by the checker."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from cdr_stream.commands.common import Exit
from cdr_stream.config import KafkaSettings, Settings, TopicSettings
from cdr_stream.connector import Connector
from cdr_stream.kafka.presence import running_members
from cdr_stream.ops.checker import IdRange, check_feed
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.pipeline.observer import ObserverGroup
from cdr_stream.pipeline.poller import RIVAL_CHECK_SECONDS
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import ConnectorProcess, settings_for, wait_for, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]

RIGHT = "the-Right-one-7"
WRONG = "a-Wrong-one-8"
RECORDS = 400


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def simulators(stack: AsyncExitStack, names: list[str]) -> dict[str, FeedSimulator]:
    sims = {}
    for seed, name in enumerate(names, 1):
        config = SimulatorConfig(password=RIGHT, records=RECORDS, page_size=100, seed=seed)
        sims[name] = await stack.enter_async_context(FeedSimulator(config))
    return sims


def many_feeds(sims: dict[str, FeedSimulator], kafka: KafkaSettings, topics: TopicSettings, **top: Any) -> Settings:
    """One process, one feed per simulator (named like it), a short failed-feed backoff for the test."""
    feeds = [settings_for(sim, kafka, topics, name=name).feeds[0] for name, sim in sims.items()]
    base = settings_for(next(iter(sims.values())), kafka, topics)
    values = {"feeds": feeds, "failed_retry_initial_seconds": 1.0, "failed_retry_max_seconds": 2.0, **top}
    return base.model_copy(update=values)


def password_files(directory: Path, passwords: dict[str, str]) -> dict[str, Path]:
    files = {}
    for name, password in passwords.items():
        files[name] = directory / f"{name}.password"
        files[name].write_text(password + "\n")  # a trailing newline, as `kubectl create secret` files often have
    return files


async def get(port: int, path: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        assert response.status == 200, f"{path}: HTTP {response.status}"
        return await response.text()


async def feed_status(port: int) -> dict[str, dict[str, Any]]:
    feeds: dict[str, dict[str, Any]] = orjson.loads(await get(port, "/status"))["feeds"]
    return feeds


def metric(body: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", body, re.MULTILINE)
    assert found, f"no {name}{{{wanted}}} in /metrics"
    return float(found.group(1))


async def wait_offset(process: ConnectorProcess, feed: str, last_id: int, timeout: float = 90) -> None:
    def reached() -> bool:
        assert process.process.poll() is None, f"the connector exited:\n{process.tail()}"
        return (process.offset(feed) or 0) >= last_id

    await wait_for(reached, timeout, f"feed {feed} to commit up to ID {last_id}")


async def wait_state(port: int, feed: str, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (status := (await feed_status(port))[feed])["state"] != state:
        assert time.monotonic() < deadline, f"feed {feed} is {status['state']}, not {state}: {status}"
        await asyncio.sleep(0.1)
    return status


async def assert_exactly_once(kafka: KafkaSettings, topics: TopicSettings, feed: str, last_id: int) -> None:
    result = await asyncio.wait_for(check_feed(kafka, topics, feed, IdRange(1, last_id)), 120)
    assert result.clean, f"feed {feed}: {result.summary()}"
    assert result.distinct_ids == last_id


def run_status_command(port: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cdr_stream.cli", "status", "--url", f"http://127.0.0.1:{port}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_a_refused_login_fails_one_feed_of_three_which_heals_when_its_password_file_is_fixed(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, stack: AsyncExitStack
) -> None:
    sims = await simulators(stack, ["east", "west", "bad"])
    port = _free_port()
    settings = many_feeds(sims, kafka, topics, http_port=port)
    files = password_files(tmp_path, {"east": RIGHT, "west": RIGHT, "bad": WRONG})
    config = write_config(tmp_path / "c.toml", settings, password_files=files)
    process = ConnectorProcess.start(config, tmp_path / "connector.log")

    for name in ("east", "west"):
        await wait_offset(process, name, RECORDS)
    failed = await wait_state(port, "bad", "failed")
    assert failed["reason"] == "auth" and failed["stopped"] is False and failed["next_attempt_at"] is not None
    assert "refused login 'demo'" in failed["last_failure"]["message"]
    for name in ("east", "west"):
        assert (await wait_state(port, name, "idle"))["last_id"] == RECORDS

    # Tried again, on the long backoff (here 1 to 2 s, never under half of it), never in a tight loop.
    await wait_for(lambda: len(sims["bad"].requests) >= 3, 30, "three attempts of the failed feed")
    arrivals = [request.at for request in sims["bad"].requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    print(f"the failed feed was tried again after {', '.join(f'{gap:.2f}' for gap in gaps)} s")
    assert min(gaps) >= 0.5
    assert all(request.status == 401 for request in sims["bad"].requests)

    status_text = await get(port, "/status")
    metrics = await get(port, "/metrics")
    assert metric(metrics, "cdr_stream_feed_state", feed="bad", state="failed") == 1
    assert metric(metrics, "cdr_stream_feed_state", feed="bad", state="idle") == 0
    assert metric(metrics, "cdr_stream_feed_state", feed="east", state="idle") == 1
    assert metric(metrics, "cdr_stream_poll_failures_total", feed="bad", reason="auth") >= 3
    assert metric(metrics, "cdr_stream_feed_stopped", feed="bad", reason="auth") == 0
    assert metric(metrics, "cdr_stream_ready", feed="east") == 1
    for probe in ("/healthz", "/readyz"):  # one failed feed of three: alive and ready (README, Health)
        await get(port, probe)
    shown = run_status_command(port)
    print(shown.stdout)
    assert shown.returncode == Exit.FAILED, shown.stderr
    assert re.search(
        r"^bad\s+failed \(auth\)\s+0\s+-\s+\d+\s+\S+\s+\S+ auth: the feed refused login", shown.stdout, re.M
    )
    assert re.search(rf"^east\s+idle\s+{RECORDS}\s", shown.stdout, re.M)

    # The Secret is rotated in place: the next attempt reads the file again; no restart.
    files["bad"].write_text(RIGHT + "\n")
    fixed_at = time.monotonic()
    await wait_offset(process, "bad", RECORDS)
    print(f"the failed feed delivered all its records {time.monotonic() - fixed_at:.1f} s after its file was fixed")
    healed = await wait_state(port, "bad", "idle")
    assert healed["consecutive_failures"] == 0 and healed["reason"] is None
    assert healed["last_failure"]["reason"] == "auth", "the last failure stays on record"
    assert run_status_command(port).returncode == 0
    sims["east"].add_records(50)
    await wait_offset(process, "east", RECORDS + 50)

    output = process.output()
    assert "feed bad failed: the feed refused login 'demo' (HTTP 401" in output
    for secret in (RIGHT, WRONG):
        assert secret not in output and secret not in status_text and secret not in metrics
    assert await process.stop() == 0, process.tail()
    assert output.count("connector started") == 1, "one process from start to end"
    for name, last in (("east", RECORDS + 50), ("west", RECORDS), ("bad", RECORDS)):
        await assert_exactly_once(kafka, topics, name, last)


async def test_a_second_process_fences_one_feed_of_three_and_the_other_two_go_on(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, stack: AsyncExitStack
) -> None:
    sims = await simulators(stack, ["east", "west", "moved"])
    port = _free_port()
    settings = many_feeds(sims, kafka, topics, http_port=port)
    files = password_files(tmp_path, dict.fromkeys(sims, RIGHT))
    first = ConnectorProcess.start(
        write_config(tmp_path / "first.toml", settings, password_files=files), tmp_path / "1.log"
    )
    for name in sims:
        await wait_offset(first, name, RECORDS)

    only_moved = settings.model_copy(update={"feeds": [settings.feed("moved")], "http_port": 0})
    second = ConnectorProcess.start(
        write_config(tmp_path / "second.toml", only_moved, password_files=files), tmp_path / "2.log"
    )
    await wait_offset(second, "moved", RECORDS)  # it fenced the first's writer of the feed at its start
    fenced_at = time.monotonic()
    fenced = await wait_state(port, "moved", "failed", timeout=2 * RIVAL_CHECK_SECONDS + 10)
    print(f"the first process stopped feed moved {time.monotonic() - fenced_at:.1f} s after it was fenced")
    assert fenced["reason"] == "fenced" and fenced["stopped"] is True and fenced["next_attempt_at"] is None
    metrics = await get(port, "/metrics")
    assert metric(metrics, "cdr_stream_feed_stopped", feed="moved", reason="fenced") == 1
    assert metric(metrics, "cdr_stream_feed_state", feed="moved", state="failed") == 1
    await get(port, "/healthz")  # alive: two feeds still run
    # The stopped feed left its presence group: the owner sees no rival, and `state set` could run.
    deadline = time.monotonic() + 30
    while len(await running_members(settings.kafka, "moved")) != 1:
        assert time.monotonic() < deadline, "the fenced feed still has a member in its presence group"
        await asyncio.sleep(0.2)
    assert "feed moved failed: another instance took over transactional id" in first.output()
    assert "feed moved stopped for good (fenced); 2 other feed(s) go on" in first.output()

    for sim in sims.values():
        sim.add_records(100)
    await wait_offset(first, "east", RECORDS + 100)
    await wait_offset(first, "west", RECORDS + 100)
    await wait_offset(second, "moved", RECORDS + 100)
    assert first.process.poll() is None
    assert await first.stop() == 0, first.tail()
    assert await second.stop() == 0, second.tail()
    for name in sims:
        await assert_exactly_once(kafka, topics, name, RECORDS + 100)


async def test_when_every_feed_has_failed_the_process_exits_1_with_one_line_per_feed(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, stack: AsyncExitStack
) -> None:
    sims = await simulators(stack, ["refused", "denied", "moved"])
    settings = many_feeds(sims, kafka, topics, give_up_after_attempts=2)
    files = password_files(tmp_path, {"refused": WRONG, "denied": WRONG, "moved": RIGHT})
    first = ConnectorProcess.start(
        write_config(tmp_path / "first.toml", settings, password_files=files), tmp_path / "1.log"
    )
    await wait_offset(first, "moved", RECORDS)
    await wait_for(lambda: first.output().count("other feed(s) go on") == 2, 60, "two feeds given up")
    assert first.process.poll() is None, "one feed still runs"
    only_moved = settings.model_copy(update={"feeds": [settings.feed("moved")]})
    second = ConnectorProcess.start(
        write_config(tmp_path / "second.toml", only_moved, password_files=files), tmp_path / "2.log"
    )
    code = await asyncio.to_thread(first.process.wait, 2 * RIVAL_CHECK_SECONDS + 30)
    output = first.output()
    assert code == Exit.FAILED, output[-3000:]
    for name in ("refused", "denied"):
        assert len(sims[name].requests) == 2, "given up after give_up_after_attempts attempts"
        assert re.search(rf"feed {name} failed \(auth\): the feed refused login 'demo' \(HTTP 401", output)
    assert re.search(r"feed moved failed \(fenced\): another instance took over transactional id", output)
    assert "stopping: every feed failed" in output
    assert await second.stop() == 0, second.tail()
    await assert_exactly_once(kafka, topics, "moved", RECORDS)


async def test_a_password_file_that_disappears_fails_its_feed_as_a_config_problem(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, stack: AsyncExitStack
) -> None:
    sims = await simulators(stack, ["kept", "lost"])
    files = password_files(tmp_path, {"kept": RIGHT, "lost": WRONG})
    feeds = [
        feed.model_copy(update={"password_file": files[feed.name]}) for feed in many_feeds(sims, kafka, topics).feeds
    ]
    settings = many_feeds(sims, kafka, topics).model_copy(update={"feeds": feeds})
    health = FeedHealth(settings)
    connector = Connector(settings, observer=ObserverGroup(ProgressLog(), health))
    await connector.start()

    def lost() -> dict[str, Any]:
        feed: dict[str, Any] = health.status()["feeds"]["lost"]
        return feed

    try:
        poller = {poller.feed: poller for poller in connector.pollers}
        await wait_for(lambda: poller["kept"].last_id == RECORDS, 60, "feed kept to catch up")
        await wait_for(lambda: lost()["reason"] == "auth", 30, "the refused login")
        files["lost"].unlink()  # a Secret's key removed: the next attempt cannot read it
        await wait_for(lambda: lost()["reason"] == "config", 30, "the unreadable password file")
        asked = len(sims["lost"].requests)
        assert asked >= 1 and lost()["state"] == "failed" and lost()["stopped"] is False
        assert f"password_file {str(files['lost'])!r} cannot be read" in lost()["last_failure"]["message"]
        await asyncio.sleep(2.5)  # at least one more attempt
        assert len(sims["lost"].requests) == asked, "without its password the feed asks nothing"
        files["lost"].write_text(RIGHT)
        await wait_for(lambda: poller["lost"].last_id == RECORDS, 60, "feed lost to heal")
        assert health.state("kept") == "idle"
    finally:
        await connector.stop()
    await connector.wait()
    for name in sims:
        await assert_exactly_once(kafka, topics, name, RECORDS)


async def test_with_exit_when_any_feed_fails_one_refused_login_stops_every_feed_with_exit_1(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, stack: AsyncExitStack
) -> None:
    sims = await simulators(stack, ["good", "bad"])
    settings = many_feeds(sims, kafka, topics, exit_when_any_feed_fails=True)
    files = password_files(tmp_path, {"good": RIGHT, "bad": WRONG})
    process = ConnectorProcess.start(
        write_config(tmp_path / "c.toml", settings, password_files=files), tmp_path / "c.log"
    )
    assert await asyncio.to_thread(process.process.wait, 60) == Exit.FAILED, process.tail()
    output = process.output()
    assert len(sims["bad"].requests) == 1, "not retried"
    assert re.search(r"feed bad failed \(auth\): the feed refused login 'demo'", output)
    assert "stopping: a feed failed and exit_when_any_feed_fails is set" in output
    assert "feed good failed" not in output, "the healthy feed was stopped, it did not fail"
