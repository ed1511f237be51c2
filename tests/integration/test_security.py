"""Security on the real broker: an https feed is trusted only through a configured CA, Kafka over SASL
SCRAM-SHA-512 works (and a wrong SASL password stops the connector clearly), and no scenario lets the
feed password or the SASL password into a log line or an exception text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector
from cdr_stream.progress import ProgressLog
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import PASSWORD, read_published, run_until_caught_up, settings_for, wait_for
from tests.integration.test_process import assert_exactly_once
from tests.leaks import assert_no_secrets, captured_logs
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
    await assert_exactly_once(kafka, topics, expected)
