"""Security on the real broker: an https feed is trusted only through a configured CA, Kafka over SASL
SCRAM-SHA-512 works (and a wrong SASL password stops the connector clearly), and no scenario lets the
feed password or the SASL password into a log line or an exception text."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from cdr_stream.config import KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.errors import ConnectorError
from cdr_stream.ops.checker import IdSet
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.metrics import ConnectorMetrics
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.pipeline.observer import ObserverGroup
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    PASSWORD,
    assert_clean,
    read_published,
    run_until_caught_up,
    settings_for,
    wait_for,
)
from tests.leaks import assert_no_secrets, captured_logs, exception_text
from tests.tls import Certificates, make_certificates

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


@dataclass
class Failures(ProgressLog):
    """Records each failed poll (and logs it as the connector does)."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
        self.seen.append((reason, message))
        super().poll_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def https_feed(certificates: Certificates, records: int = 600) -> FeedSimulator:
    return FeedSimulator(
        SimulatorConfig(password=PASSWORD, records=records, page_size=200, ssl_context=certificates.server_context())
    )


async def test_an_https_feed_with_an_untrusted_certificate_is_refused_and_retried(
    kafka: KafkaSettings, topics: TopicSettings, certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    failures = Failures()
    async with https_feed(certificates) as sim:
        assert sim.url.startswith("https://")
        connector = Connector(settings_for(sim, kafka, topics), observer=failures)
        await connector.start()
        try:
            await wait_for(lambda: len(failures.seen) >= 3, 60, "three refused connections")
        finally:
            await connector.stop()
        assert sim.requests == [], "a request got through the TLS handshake"
    assert {reason for reason, _ in failures.seen} == {"connection"}  # retried, like any connection error
    assert all("certificate verify failed" in message for _, message in failures.seen), failures.seen[0]
    published = await read_published(kafka, topics)
    assert (published.events, published.dead_letters, published.states) == ([], [], [])
    assert_no_secrets(captured_logs(caplog), [PASSWORD], "the logs")


async def test_an_https_feed_works_end_to_end_with_its_ca_file(
    kafka: KafkaSettings, topics: TopicSettings, certificates: Certificates
) -> None:
    async with https_feed(certificates) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics, ca_file=str(certificates.ca_file)), sim)
        expected = set(sim.ids())
        assert sim.requests and all(request.password_in_body for request in sim.requests)
    await assert_clean(kafka, topics, IdSet(expected))


# --- secrets: nothing lets the feed password out ---------------------------------------------------

# Characters that a form body, a URL or JSON would encode: an echo of the request shows them encoded.
AWKWARD_PASSWORD = "p@ss w0rd&=%/\u00e9+\"'"


@asynccontextmanager
async def echo_feed(status: int) -> AsyncIterator[str]:
    """A feed that answers `status` with a page that echoes the request back (some PHP error pages do)."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        page = f"<html><body>Error. You sent: {body} / {request.query_string} / {dict(request.headers)}</body></html>"
        return web.Response(status=status, text=page, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/billingfeed.php", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/billingfeed.php"
    finally:
        await runner.cleanup()


def feed_settings(kafka: KafkaSettings, topics: TopicSettings, url: str, password: str) -> Settings:
    return parse_settings(
        {
            "feeds": [
                {
                    "name": "leaky",
                    "url": url,
                    "login": "demo",
                    "password": password,
                    "poll_interval_seconds": 0.2,
                    "backoff_initial_seconds": 0.05,
                    "backoff_max_seconds": 0.2,
                    "connect_timeout_seconds": 2,
                }
            ],
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
            "topics": topics.model_dump(),
            "give_up_after_attempts": 1,  # a refused login stops the (only) feed, and so the connector
        },
        {},
    )


@dataclass
class Run:
    failures: Failures
    error: BaseException | None
    #: What the HTTP endpoints would serve: /metrics, and the /healthz, /readyz and /status bodies.
    exposed: str


async def run_until_failures(settings: Settings, count: int) -> Run:
    """Run a connector until `count` polls failed (or it stopped itself)."""
    failures = Failures()
    health = FeedHealth(settings)
    metrics = ConnectorMetrics([feed.name for feed in settings.feeds], health)
    connector = Connector(settings, observer=ObserverGroup(failures, metrics, health))
    await connector.start()
    error: BaseException | None = None
    try:
        await wait_for(lambda: len(failures.seen) >= count or connector.stopping, 60, f"{count} failed polls")
        await connector.stop()
        await connector.wait()
    except ConnectorError as exc:
        error = exc
    exposed = metrics.render().decode() + repr(health.liveness()) + repr(health.readiness()) + repr(health.status())
    return Run(failures, error, exposed)


@pytest.mark.parametrize(("status", "reason"), [(500, "http_5xx"), (200, "not_json_array"), (401, "auth")])
async def test_a_feed_page_that_echoes_the_request_does_not_leak_the_password(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture, status: int, reason: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with echo_feed(status) as url:
        run = await run_until_failures(feed_settings(kafka, topics, url, AWKWARD_PASSWORD), 2)
    failures, error = run.failures, run.error
    if status != 401:
        assert f'cdr_stream_poll_failures_total{{feed="leaky",reason="{reason}"}}' in run.exposed
    assert_no_secrets(run.exposed, [AWKWARD_PASSWORD], "the metrics and probes")
    if status == 401:  # not retried: the connector stops
        assert error is not None and failures.seen == []
        text = exception_text(error)
    else:
        assert {seen_reason for seen_reason, _ in failures.seen} == {reason}
        text = "\n".join(message for _, message in failures.seen)
    assert "You sent" in text or "demo" in text, text  # the page (or the login) is quoted: the check means something
    assert_no_secrets(text, [AWKWARD_PASSWORD], "the failure messages")
    assert_no_secrets(captured_logs(caplog), [AWKWARD_PASSWORD], "the logs")


async def test_connection_errors_and_a_wrong_password_do_not_leak_it(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/billingfeed.php"
        unreachable = await run_until_failures(feed_settings(kafka, topics, url, AWKWARD_PASSWORD), 2)
    failures = unreachable.failures
    assert {reason for reason, _ in failures.seen} == {"connection"}
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=5)) as sim:
        refused = await run_until_failures(feed_settings(kafka, topics, sim.url, AWKWARD_PASSWORD), 1)
    error = refused.error
    assert_no_secrets(unreachable.exposed + refused.exposed, [AWKWARD_PASSWORD], "the metrics and probes")
    assert error is not None and "refused login 'demo'" in str(error)
    text = "\n".join(message for _, message in failures.seen) + exception_text(error) + captured_logs(caplog)
    assert_no_secrets(text, [AWKWARD_PASSWORD], "the messages and logs")
