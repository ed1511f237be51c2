"""The three-broker cluster of dev/kafka/cluster, driven from the tests and dev/soak.py.

Its ports are KAFKA_CLUSTER_PORT and up (by default KAFKA_PORT + 108: 19200 beside the default 19092).
Each node also has a listener that advertises the address of a proxy in front of it (`proxy_port`): the
network fault tests put Toxiproxy there.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdr_stream.config import KafkaSettings
from cdr_stream.kafka.clients import admin_client

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "dev" / "kafka" / "cluster"
NODES = (1, 2, 3)
HOST = "127.0.0.1"
_TRANSACTION_COORDINATOR = 1  # FindCoordinator key type: 0 a group, 1 a transactional id


def cluster_base_port() -> int:
    """KAFKA_CLUSTER_PORT, or KAFKA_PORT + 108: the cluster's hundred ports start at 19200 by default."""
    explicit = os.environ.get("KAFKA_CLUSTER_PORT")
    if explicit:
        return int(explicit)
    return int(os.environ.get("KAFKA_PORT", "19092")) + 108


class ClusterError(Exception):
    """dev/kafka/cluster failed; its output says why."""


@dataclass(frozen=True)
class Cluster:
    base_port: int

    def client_port(self, node: int) -> int:
        return self.base_port + node

    def proxied_port(self, node: int) -> int:
        """The port the node's second listener runs on; it advertises `proxy_port`."""
        return self.base_port + 20 + node

    def proxy_port(self, node: int) -> int:
        """Where a proxy in front of the node's second listener must listen."""
        return self.base_port + 30 + node

    @property
    def spare_port(self) -> int:
        """A port of the cluster's range no node uses (the Toxiproxy API)."""
        return self.base_port + 40

    @property
    def kafka(self) -> KafkaSettings:
        """Direct to the brokers (the checker, the probes)."""
        return KafkaSettings(bootstrap_servers=",".join(f"{HOST}:{self.client_port(n)}" for n in NODES))

    @property
    def proxied_kafka(self) -> KafkaSettings:
        """Through the proxies: every broker the client learns of is a proxy's address."""
        return KafkaSettings(bootstrap_servers=",".join(f"{HOST}:{self.proxy_port(n)}" for n in NODES))

    def run(self, *args: str, timeout: float = 240) -> str:
        env = dict(os.environ, KAFKA_CLUSTER_PORT=str(self.base_port))
        done = subprocess.run(
            [str(CLUSTER), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise ClusterError(f"dev/kafka/cluster {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    async def arun(self, *args: str) -> str:
        return await asyncio.to_thread(self.run, *args)

    async def kill(self, node: int) -> None:
        await self.arun("kill-node", str(node))

    async def stop(self, node: int) -> None:
        await self.arun("stop-node", str(node))

    async def start(self, node: int) -> None:
        """Start the node (a no-op when it runs) and wait until it serves."""
        await self.arun("start-node", str(node))

    async def start_all(self) -> None:
        """Every node running again (after a test that stopped or killed some)."""
        await asyncio.gather(*(self.start(node) for node in NODES))

    async def _admin_call(self, call: Any) -> Any:
        admin = admin_client(self.kafka)
        await admin.start()
        try:
            return await call(admin)
        finally:
            await admin.close()

    async def leader_of(self, topic: str, partition: int) -> int:
        async def describe(admin: Any) -> int:
            (described,) = await admin.describe_topics([topic])
            return next(int(p["leader"]) for p in described["partitions"] if p["partition"] == partition)

        return int(await self._admin_call(describe))

    async def replication_of(self, topic: str) -> list[int]:
        """The replica count of each of the topic's partitions."""

        async def describe(admin: Any) -> list[int]:
            (described,) = await admin.describe_topics([topic])
            return [len(p["replicas"]) for p in described["partitions"]]

        return list(await self._admin_call(describe))

    async def transaction_coordinator(self, transactional_id: str) -> int:
        """The node that coordinates the transactions of `transactional_id`."""

        async def find(admin: Any) -> int:
            return int(await admin._client.coordinator_lookup(_TRANSACTION_COORDINATOR, transactional_id))

        return int(await self._admin_call(find))
