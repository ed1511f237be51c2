"""The HTTP endpoints on a real socket: /metrics in Prometheus' format, /healthz and /readyz as probes."""

from __future__ import annotations

import socket

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdr_stream.config import parse_settings
from cdr_stream.errors import EndpointError
from cdr_stream.ops.endpoints import Endpoints
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.metrics import ConnectorMetrics

SETTINGS = parse_settings(
    {"feeds": [{"name": "east", "url": "http://127.0.0.1:1/f", "login": "l", "password": "p"}]}, {}
)


async def _get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_health_and_readiness_are_served() -> None:
    health = FeedHealth(SETTINGS)
    metrics = ConnectorMetrics(["east"], health)
    async with Endpoints(metrics, health, "127.0.0.1", 0) as endpoints:
        assert endpoints.port > 0
        status, content_type, body = await _get(endpoints.port, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        names = {family.name for family in text_string_to_metric_families(body)}
        assert {"cdr_stream_polls", "cdr_stream_ready", "cdr_stream_build_info"} <= names

        status, _, body = await _get(endpoints.port, "/readyz")
        assert status == 503 and '"ready":false' in body
        status, _, _ = await _get(endpoints.port, "/healthz")
        assert status == 200

        health.offset_loaded("east", 7)
        status, content_type, body = await _get(endpoints.port, "/readyz")
        assert status == 200 and content_type == "application/json" and '"last_id":7' in body
        status, _, body = await _get(endpoints.port, "/metrics")
        assert 'cdr_stream_ready{feed="east"} 1.0' in body


async def test_a_taken_port_is_a_clear_error_naming_the_setting() -> None:
    health = FeedHealth(SETTINGS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EndpointError, match=rf"http_port.*{port}|{port}.*http_port"):
            await Endpoints(ConnectorMetrics(["east"], health), health, "127.0.0.1", port).start()


async def test_stop_frees_the_port_and_is_safe_twice() -> None:
    health = FeedHealth(SETTINGS)
    endpoints = Endpoints(ConnectorMetrics(["east"], health), health, "127.0.0.1", 0)
    await endpoints.start()
    assert (await _get(endpoints.port, "/healthz"))[0] == 200
    await endpoints.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(endpoints.port, "/healthz")
    await endpoints.stop()
    # The port is free for the next connector process: another set of endpoints serves on it.
    async with Endpoints(ConnectorMetrics(["east"], health), health, "127.0.0.1", endpoints.port) as again:
        assert (await _get(again.port, "/healthz"))[0] == 200


async def test_status_serves_each_feed_state_as_json_without_secrets() -> None:
    settings = parse_settings(
        {
            "feeds": [
                {"name": name, "url": "http://127.0.0.1:1/f", "login": "l", "password": "Pa55-w0rd"}
                for name in ("east", "west")
            ]
        },
        {},
    )
    health = FeedHealth(settings)
    metrics = ConnectorMetrics(["east", "west"], health)
    async with Endpoints(metrics, health, "127.0.0.1", 0) as endpoints:
        health.offset_loaded("east", 7)
        health.poll_finished("east", seconds=1, rows=0, advanced=False)
        health.feed_failed("west", reason="auth", message="the feed refused login 'l'", retry_in=60, consecutive=2)
        status, content_type, body = await _get(endpoints.port, "/status")
        assert status == 200 and content_type == "application/json"
        shown = orjson.loads(body)
        assert shown["status"] == "degraded"
        assert shown["feeds"]["east"]["state"] == "idle" and shown["feeds"]["east"]["last_id"] == 7
        west = shown["feeds"]["west"]
        assert (west["state"], west["reason"], west["consecutive_failures"]) == ("failed", "auth", 2)
        assert west["last_failure"]["message"] == "the feed refused login 'l'" and west["next_attempt_at"]
        assert "Pa55-w0rd" not in body
        status, _, _ = await _get(endpoints.port, "/readyz")
        assert status == 200, "one failed feed of two leaves the process ready"
