"""A real Prometheus server (the Debian package's) scrapes a running connector and evaluates the alert rules.

The rules are the chart's own PrometheusRule, rendered by helm, so what is tested is what is installed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.simulator import FeedSimulator, SimulatorConfig

from .support import PASSWORD, settings_for, start_process, stop_process, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.tools, pytest.mark.usefixtures("cleanup_topics")]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CHART_RULES = "helm/cdr-stream/templates/prometheusrule.yaml"


def _rules_file(directory: Path) -> Path:
    """The chart's alert rules as a plain rules file (the same extraction CI feeds to promtool)."""
    target = directory / "rules.yaml"
    subprocess.run([str(ROOT / "dev" / "ops" / "alert-rules"), str(target)], check=True, timeout=120)
    return target


class PrometheusServer:
    def __init__(self, directory: Path, target_port: int, rules: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus server is missing: apt-get install prometheus (dev/ops/check installs it)"
        self.port = _free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: ['{rules}']\n"
            "scrape_configs:\n  - job_name: cdr-stream\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def until_up(self, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert self.process.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                await self.api("status/buildinfo")
                return
            except aiohttp.ClientError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def value(self, query: str) -> float | None:
        result = (await self.api("query", query=query))["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def test_prometheus_scrapes_published_records_and_evaluates_the_alerts(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    http_port = _free_port()
    rules = _rules_file(tmp_path)
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=2_000, page_size=500, seed=9)) as sim:
        settings = settings_for(sim, kafka, topics).model_copy(update={"http_port": http_port})
        config = write_config(tmp_path / "c.toml", settings)
        connector = start_process("run", "--config", str(config), log=tmp_path / "connector.log")
        prometheus = PrometheusServer(tmp_path, http_port, rules)
        try:
            await prometheus.until_up()
            published = 'cdr_stream_records_published_total{feed="sim",job="cdr-stream"}'

            async def published_now() -> float:
                return await prometheus.value(published) or 0.0

            first = 0.0
            deadline = asyncio.get_running_loop().time() + 90
            while first <= 0:
                assert asyncio.get_running_loop().time() < deadline, (tmp_path / "connector.log").read_text()[-3000:]
                await asyncio.sleep(1)
                first = await published_now()
            sim.add_records(1_500)
            await asyncio.sleep(0)
            second = first
            while second <= first:
                assert asyncio.get_running_loop().time() < deadline, "published records did not rise"
                await asyncio.sleep(1)
                second = await published_now()
            assert await prometheus.value('up{job="cdr-stream"}') == 1
            assert await prometheus.value('cdr_stream_ready{feed="sim"}') == 1
            assert await prometheus.value('cdr_stream_feed_state{feed="sim",state="failed"}') == 0

            # Every alert rule of the chart is loaded, healthy, and has been evaluated against live data.
            async def evaluated() -> list[dict[str, Any]]:
                groups = (await prometheus.api("rules", type="alert"))["groups"]
                return [rule for group in groups for rule in group["rules"]]

            alerts = await evaluated()
            chart_alerts = set(re.findall(r"- alert: (\w+)", (ROOT / CHART_RULES).read_text()))
            assert len(chart_alerts) >= 10 and "CdrStreamFeedFailed" in chart_alerts
            assert sorted(rule["name"] for rule in alerts) == sorted(chart_alerts), "every alert of the chart, once"
            while any(rule["lastEvaluation"].startswith("0001") for rule in alerts):
                assert asyncio.get_running_loop().time() < deadline, alerts
                await asyncio.sleep(1)
                alerts = await evaluated()
            for rule in alerts:
                assert rule["health"] == "ok", rule
            firing = [rule["name"] for rule in alerts if rule["state"] == "firing"]
            assert firing == [], f"a healthy connector fires {firing}"
        finally:
            prometheus.stop()
            await stop_process(connector)
