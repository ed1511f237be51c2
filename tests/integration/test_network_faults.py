"""Network faults between the connector and the brokers, and between the connector and the feed, made by
Toxiproxy (dev/toxiproxy/install builds it from its Go module) on loopback.

The connector reaches the three-broker cluster only through one proxy per broker: each broker has a
listener that advertises its proxy's address, so every connection the connector makes to any broker goes
through a proxy. Its feed URL points at a proxy in front of the simulator. The checker reads the brokers
directly. Every fault is bounded in time and removed afterwards; the proxies go with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdr_stream.config import TopicSettings
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.cluster import NODES, Cluster
from tests.integration.harness import aim_at_a_transaction
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    TransactionProbe,
    connector_streaming,
    finish_clean,
)
from tests.integration.toxiproxy import (
    BLACKHOLE,
    DOWNSTREAM,
    LATENCY,
    TRICKLE,
    Fault,
    Proxy,
    Toxiproxy,
    ToxiproxyError,
    connection_loss,
    fault,
    injected,
    sleep_with,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def toxiproxy(kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    """The Toxiproxy server on the cluster's spare port; fails, never skips, when it cannot start."""
    try:
        server = Toxiproxy.start(kafka_cluster.spare_port, tmp_path_factory.mktemp("toxiproxy") / "server.log")
    except ToxiproxyError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
async def broker_proxies(cluster: Cluster, toxiproxy: Toxiproxy) -> AsyncIterator[list[Proxy]]:
    """One proxy per broker, on the address its second listener advertises; no toxic at the start."""
    proxies = [
        await toxiproxy.create(f"broker-{node}", cluster.proxy_port(node), cluster.proxied_port(node)) for node in NODES
    ]
    yield proxies
    for proxy in proxies:
        await proxy.clear()


def feed(seconds: float, records: int = 6000) -> SimulatorConfig:
    """A catch-up of about `seconds`: pages of 500 rows, each answered after a latency."""
    return SimulatorConfig(password=PASSWORD, records=records, page_size=500, latency_ms=1000 * seconds * 500 / records)


@dataclass
class FeedBehindProxy:
    """The simulator, reached through a proxy of its own."""

    sim: FeedSimulator
    proxy: Proxy
    url: str

    async def connector(
        self, cluster: Cluster, topics: TopicSettings, workdir: Path, **kafka: float
    ) -> ConnectorProcess:
        """A connector reaching the brokers and the feed only through their proxies, once it committed."""
        feed_settings = {"url": self.url, "read_timeout_seconds": 5.0}
        return await connector_streaming(cluster.proxied_kafka, topics, self.sim, workdir, feed_settings, **kafka)


@contextlib.asynccontextmanager
async def feed_behind_proxy(toxiproxy: Toxiproxy, config: SimulatorConfig) -> AsyncIterator[FeedBehindProxy]:
    async with FeedSimulator(config) as sim:
        proxy, url = await toxiproxy.in_front_of("feed", sim.url)
        try:
            yield FeedBehindProxy(sim, proxy, url)
        finally:
            await toxiproxy.delete(proxy)


#: A fault and how long it lasts (seconds).
Timed = tuple[Fault, float]


async def faults_during_catch_up(
    cluster: Cluster,
    toxiproxy: Toxiproxy,
    topics: TopicSettings,
    tmp_path: Path,
    brokers: list[Proxy] | None,
    faults: list[Timed],
) -> None:
    """Each fault in turn, for its seconds, on the `brokers` proxies (the feed's when None) during one
    catch-up: one run for all, since a connector's start and the checker cost more than a fault. Then the
    feed is finished and judged. The connector must never exit, and every fault must land in the catch-up."""
    # The faults hold the catch-up back (about 5 s of its pace got through them in every run so far), so one
    # of 60 % of their length still runs when they end, and finishes soon after.
    catch_up = 0.6 * sum(seconds for _, seconds in faults)
    async with feed_behind_proxy(toxiproxy, feed(catch_up, records=300 * round(catch_up))) as behind:
        connector = await behind.connector(cluster, topics, tmp_path)
        proxies = [behind.proxy] if brokers is None else brokers
        where = "feed" if brokers is None else "brokers"
        for what, seconds in faults:
            before = connector.offset()
            await sleep_with(proxies, what, seconds)
            print(f"{what.name} on the {where} for {seconds:g} s: offset {before} -> {connector.offset()}")
            assert connector.process.poll() is None, f"the connector exited:\n{connector.tail()}"
        assert (connector.offset() or 0) < behind.sim.max_id, "the faults must land in the catch-up"
        await finish_clean(connector, cluster.kafka, topics, behind.sim.max_id)


async def test_network_faults_between_the_connector_and_the_brokers(
    cluster: Cluster, toxiproxy: Toxiproxy, broker_proxies: list[Proxy], cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    faults = [(LATENCY, 6.0), (connection_loss(0.1), 5.0), (connection_loss(0.3), 5.0), (BLACKHOLE, 10.0)]
    faults += [(TRICKLE, 6.0)]
    await faults_during_catch_up(cluster, toxiproxy, cluster_topics, tmp_path, broker_proxies, faults)


async def test_network_faults_between_the_connector_and_the_feed(
    cluster: Cluster, toxiproxy: Toxiproxy, broker_proxies: list[Proxy], cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    trickle = fault("bandwidth 1 KB/s", "bandwidth", (DOWNSTREAM,), rate=1)
    faults = [(LATENCY, 6.0), (connection_loss(0.3), 5.0), (BLACKHOLE, 10.0), (trickle, 6.0)]
    await faults_during_catch_up(cluster, toxiproxy, cluster_topics, tmp_path, None, faults)


async def test_a_feed_answer_cut_off_mid_body_is_retried(
    cluster: Cluster, toxiproxy: Toxiproxy, broker_proxies: list[Proxy], cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    """The answer trickles in (4 KB/s), then a blackhole stops it halfway without a reset: the connector
    times the answer out (reason `timeout`), publishes nothing of it, and asks again once it is gone."""
    async with feed_behind_proxy(toxiproxy, feed(10)) as behind:
        connector = await behind.connector(cluster, cluster_topics, tmp_path)
        mark = len(connector.output())
        async with injected([behind.proxy], fault("trickle", "bandwidth", (DOWNSTREAM,), rate=4)):
            await asyncio.sleep(1.5)  # an answer of some 40 KB is on its way
            await sleep_with([behind.proxy], BLACKHOLE, 8)  # longer than read_timeout_seconds (5)
        during = connector.output()[mark:]
        assert '"reason":"timeout"' in during.replace(" ", ""), during[-3000:]
        await finish_clean(connector, cluster.kafka, cluster_topics, behind.sim.max_id)


async def frozen_in_an_ongoing_transaction(connector: ConnectorProcess, probe: TransactionProbe) -> bool:
    """The connector frozen (SIGSTOP) in a transaction the coordinator waits on: still open half a second
    later, so not one whose commit markers are being written (that one ends without the client)."""
    deadline = time.monotonic() + 30
    while (left := deadline - time.monotonic()) > 0:
        if not await aim_at_a_transaction(connector, probe, random.Random(), seconds=left):
            return False
        await asyncio.sleep(0.5)
        if await probe.open_partitions():
            return True
        os.kill(connector.pid, signal.SIGCONT)
    return False


async def test_a_blackhole_longer_than_the_transaction_timeout_is_recovered_from(
    cluster: Cluster, toxiproxy: Toxiproxy, broker_proxies: list[Proxy], cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    """Mid-transaction, the brokers go silent for longer than transaction.timeout.ms (3 s here) but less than
    the commit timeout (20 s): the coordinator aborts the transaction and bumps the producer epoch, so the
    producer's next request is refused as fenced. No other instance exists: the connector must rebuild its
    producer and go on, not exit as a zombie (it did, exit 3, before the fix)."""
    async with feed_behind_proxy(toxiproxy, feed(15)) as behind:
        connector = await behind.connector(cluster, cluster_topics, tmp_path, transaction_timeout_ms=3000)
        async with TransactionProbe(cluster.kafka, cluster_topics) as probe:
            ongoing = await frozen_in_an_ongoing_transaction(connector, probe)
        try:
            assert ongoing, "no transaction was seen open on the coordinator"
            async with injected(broker_proxies, BLACKHOLE):
                os.kill(connector.pid, signal.SIGCONT)
                await asyncio.sleep(8)  # the transaction timeout (3 s) and the broker's abort check (1 s) pass
        finally:
            os.kill(connector.pid, signal.SIGCONT)
        await connector.wait_offset((connector.offset() or 0) + 1, timeout=60)
        assert "transaction.timeout.ms" in connector.output(), connector.tail()
        await finish_clean(connector, cluster.kafka, cluster_topics, behind.sim.max_id)
