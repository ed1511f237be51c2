"""`cdr-stream status`: a running connector's /status as a table, and its exit codes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

from cdr_stream.config import parse_settings
from cdr_stream.ops.endpoints import Endpoints
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.metrics import ConnectorMetrics
from cdr_stream.ops.status import status_table, status_url
from cdr_stream.pipeline.observer import PageReport

SETTINGS = parse_settings(
    {"feeds": [{"name": name, "url": "http://127.0.0.1:1/f", "login": "l", "password": "p"} for name in ("a", "bb")]},
    {},
)


def _status(url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cdr_stream.cli", "status", "--url", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_url_may_name_the_connector_or_its_status_page() -> None:
    assert status_url("http://pod:8080") == "http://pod:8080/status"
    assert status_url("http://pod:8080/") == "http://pod:8080/status"
    assert status_url("http://pod:8080/status") == "http://pod:8080/status"


def test_the_table_has_one_aligned_line_per_feed_and_the_failure_last() -> None:
    wall = iter([1_800_000_000.0, 1_800_000_000.0, 1_800_000_100.0])
    health = FeedHealth(SETTINGS, wall_clock=lambda: next(wall))
    health.offset_loaded("a", 41)
    health.page_committed("a", PageReport(41, 42, 1, 0, 0, 0))
    health.poll_finished("a", seconds=1, rows=1, advanced=True)
    health.feed_failed("bb", reason="fenced", message="another instance took over", retry_in=None, consecutive=1)
    lines = status_table(health.status()).splitlines()
    assert lines[0].split() == [
        "feed",
        "state",
        "last_id",
        "last",
        "commit",
        "failures",
        "next",
        "attempt",
        "last",
        "failure",
    ]
    assert lines[1].split() == [
        "a",
        "catching_up",
        "42",
        "2027-01-15T08:00:00+00:00",
        "0",
        "2027-01-15T08:00:00+00:00",
        "-",
    ]
    assert lines[2].split()[:6] == ["bb", "failed", "(fenced,", "stopped)", "-", "-"]
    assert lines[2].endswith("2027-01-15T08:01:40+00:00 fenced: another instance took over")
    assert lines[1].index("42") == lines[0].index("last_id"), "the columns are aligned"
    assert lines[-1] == "connector: degraded"


async def test_the_command_exits_0_when_every_feed_works_and_1_when_one_failed_or_none_answers() -> None:
    health = FeedHealth(SETTINGS)
    async with Endpoints(ConnectorMetrics(["a", "bb"], health), health, "127.0.0.1", 0) as endpoints:
        url = f"http://127.0.0.1:{endpoints.port}"
        for feed in ("a", "bb"):
            health.poll_finished(feed, seconds=1, rows=0, advanced=False)
        working = await asyncio.to_thread(_status, url)
        assert working.returncode == 0, working.stderr
        assert "connector: ok" in working.stdout
        health.feed_failed("bb", reason="auth", message="the feed refused login 'l'", retry_in=60, consecutive=1)
        failed = await asyncio.to_thread(_status, url)
        assert failed.returncode == 1 and "failed (auth)" in failed.stdout
        not_status = await asyncio.to_thread(_status, f"{url}/metrics/status")
        assert not_status.returncode == 1 and "answered HTTP 404" in not_status.stderr
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = await asyncio.to_thread(_status, f"http://127.0.0.1:{closed.getsockname()[1]}")
    assert nobody.returncode == 1 and nobody.stderr.startswith("cdr-stream: cannot read http://127.0.0.1:")
