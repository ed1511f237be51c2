"""Integration fixtures: the real Kafka broker (started when none runs), the simulator, unique topics.

A test that needs the broker fails when it cannot be started; it never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from tests.integration.cluster import Cluster, ClusterError, cluster_base_port
from tests.integration.sshd import SshdError, SshServer, start_sshd, stop_sshd
from tests.integration.support import delete_topics, fresh_topics, kill_leftovers

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "dev" / "kafka" / "broker"
BOOTSTRAP = os.environ.get("CDR_STREAM_TEST_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '19092')}")


def _answers(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the broker (the sshd and Prometheus tests too): `-m "not kafka"` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaSettings]:
    started_here = False
    if not _answers(BOOTSTRAP):
        result = subprocess.run([str(BROKER), "start"], capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.fail(f"the Kafka broker could not be started:\n{result.stdout}\n{result.stderr}", pytrace=False)
        started_here = True
    yield KafkaSettings(bootstrap_servers=BOOTSTRAP)
    if started_here and not os.environ.get("CDR_STREAM_KEEP_BROKER"):
        subprocess.run([str(BROKER), "stop"], capture_output=True, timeout=60, check=False)


@pytest.fixture
def topics() -> TopicSettings:
    return fresh_topics()


@pytest.fixture
async def cleanup_topics(kafka: KafkaSettings, topics: TopicSettings) -> AsyncIterator[None]:
    """Delete the test's topics afterwards so a long suite does not fill the broker's disk."""
    yield
    await delete_topics(kafka, topics)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH server on a loopback port (see sshd.py); fails, never skips, when it cannot start."""
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SshdError as exc:
        pytest.fail(f"the test sshd could not be started: {exc}", pytrace=False)
    yield server
    stop_sshd(server)


@pytest.fixture(autouse=True)
def _no_connector_outlives_its_test() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Cluster]:
    """The three-broker cluster (dev/kafka/cluster), started for the session; fails, never skips."""
    cluster = Cluster(cluster_base_port())
    try:
        cluster.run("start")
    except (ClusterError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the Kafka cluster could not be started: {exc}", pytrace=False)
    yield cluster
    if not os.environ.get("CDR_STREAM_KEEP_BROKER"):
        cluster.run("stop")


@pytest.fixture
async def cluster(kafka_cluster: Cluster) -> AsyncIterator[Cluster]:
    """The cluster with every node running at the start of the test and again after it."""
    await kafka_cluster.start_all()
    yield kafka_cluster
    await kafka_cluster.start_all()


@pytest.fixture
async def cluster_topics(kafka_cluster: Cluster) -> AsyncIterator[TopicSettings]:
    topics = fresh_topics()
    yield topics
    await kafka_cluster.start_all()
    await delete_topics(kafka_cluster.kafka, topics)
