"""Cluster faults under a running connector process, on the three-broker cluster of dev/kafka/cluster
(replication factor 3, min.insync.replicas=2): a kill -9 of an events partition's leader and of the
transaction coordinator in the middle of a transaction, a rolling restart during the catch-up, and two
brokers lost (min.insync.replicas cannot be met) then restored.

In every case the connector keeps running, and the checker finds every ID exactly once, in order per
account, with the offset at the last ID.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from cdr_stream.config import TopicSettings
from cdr_stream.kafka.writer import transactional_id
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.cluster import NODES, Cluster
from tests.integration.harness import aim_at_a_transaction
from tests.integration.support import (
    FEED,
    PASSWORD,
    ConnectorProcess,
    TransactionProbe,
    connector_streaming,
    finish_clean,
)

pytestmark = pytest.mark.kafka

_OPEN = re.compile(r"(.+)\[(\d+)\]$")


def catch_up_feed(seconds: float) -> SimulatorConfig:
    """A feed of 10,000 rows in 20 pages whose catch-up takes about `seconds` (the answer latency)."""
    return SimulatorConfig(
        password=PASSWORD, records=10_000, page_size=500, latency_ms=1000 * seconds / 20, invalid_rate=0.01
    )


async def frozen_mid_transaction(connector: ConnectorProcess, cluster: Cluster, topics: TopicSettings) -> list[str]:
    """The connector frozen (SIGSTOP) while a transaction of it is open; the partitions with its records."""
    async with TransactionProbe(cluster.kafka, topics) as probe:
        found = await aim_at_a_transaction(connector, probe, random.Random(), seconds=20)
    assert found, f"no transaction was seen open in 20 s:\n{connector.tail()}"
    return found


def resume(connector: ConnectorProcess) -> None:
    os.kill(connector.pid, signal.SIGCONT)


async def test_kill_9_of_an_events_leader_mid_transaction(
    cluster: Cluster, cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(catch_up_feed(10)) as sim:
        connector = await connector_streaming(cluster.kafka, cluster_topics, sim, tmp_path)
        open_partitions = await frozen_mid_transaction(connector, cluster, cluster_topics)
        events = [int(m[2]) for p in open_partitions if (m := _OPEN.match(p)) and m[1] == cluster_topics.events]
        try:
            assert events, f"the open transaction has no events partition: {open_partitions}"
            leader = await cluster.leader_of(cluster_topics.events, events[0])
            await cluster.kill(leader)
        finally:
            resume(connector)
        print(f"killed node {leader}, leader of {cluster_topics.events}[{events[0]}], mid-transaction")
        await cluster.start(leader)
        assert connector.process.poll() is None, connector.tail()
        await finish_clean(connector, cluster.kafka, cluster_topics, sim.max_id)


async def test_kill_9_of_the_transaction_coordinator_mid_transaction(
    cluster: Cluster, cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(catch_up_feed(10)) as sim:
        connector = await connector_streaming(cluster.kafka, cluster_topics, sim, tmp_path)
        prefix = cluster_topics.events.split(".")[0]  # settings_for's transactional id prefix
        kafka = cluster.kafka.model_copy(update={"transactional_id_prefix": prefix})
        coordinator = await cluster.transaction_coordinator(transactional_id(kafka, FEED))
        await frozen_mid_transaction(connector, cluster, cluster_topics)
        try:
            await cluster.kill(coordinator)
        finally:
            resume(connector)
        print(f"killed node {coordinator}, the transaction coordinator, mid-transaction")
        await cluster.start(coordinator)
        assert connector.process.poll() is None, connector.tail()
        await finish_clean(connector, cluster.kafka, cluster_topics, sim.max_id)


async def test_a_rolling_restart_of_all_three_during_catch_up(
    cluster: Cluster, cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(catch_up_feed(30)) as sim:
        connector = await connector_streaming(cluster.kafka, cluster_topics, sim, tmp_path)
        for node in NODES:
            assert (connector.offset() or 0) < sim.max_id, f"node {node}'s restart must begin in the catch-up"
            await cluster.stop(node)
            await cluster.start(node)
            assert connector.process.poll() is None, connector.tail()
        print(f"rolling restart done at offset {connector.offset()} of {sim.max_id}")
        await finish_clean(connector, cluster.kafka, cluster_topics, sim.max_id)


async def test_two_brokers_lost_stall_the_connector_until_restored(
    cluster: Cluster, cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    """With one broker left, min.insync.replicas=2 cannot be met (and the controllers have no quorum):
    nothing commits, the connector retries without exiting, and goes on once the brokers are back."""
    async with FeedSimulator(catch_up_feed(20)) as sim:
        connector = await connector_streaming(cluster.kafka, cluster_topics, sim, tmp_path)
        await asyncio.gather(cluster.kill(2), cluster.kill(3))
        lost_at = time.monotonic()
        await asyncio.sleep(3)  # a commit in flight when the brokers died may still land
        stalled_at = connector.offset()
        await asyncio.sleep(8)
        assert connector.process.poll() is None, f"the connector exited:\n{connector.tail()}"
        assert connector.offset() == stalled_at, "a transaction committed with one broker of three"
        await asyncio.gather(cluster.start(2), cluster.start(3))
        print(f"two brokers down for {time.monotonic() - lost_at:.0f} s, offset held at {stalled_at}")
        await finish_clean(connector, cluster.kafka, cluster_topics, sim.max_id)


async def test_topics_created_while_a_broker_is_down_get_three_replicas(
    cluster: Cluster, cluster_topics: TopicSettings, tmp_path: Path
) -> None:
    """The cluster's replication (default.replication.factor=3), not the count of brokers up at the time."""
    await cluster.stop(3)
    async with FeedSimulator(catch_up_feed(2)) as sim:
        connector = await connector_streaming(cluster.kafka, cluster_topics, sim, tmp_path)
        for topic in (cluster_topics.events, cluster_topics.dead_letter, cluster_topics.state):
            assert set(await cluster.replication_of(topic)) == {3}, topic
        await cluster.start(3)
        await finish_clean(connector, cluster.kafka, cluster_topics, sim.max_id)
