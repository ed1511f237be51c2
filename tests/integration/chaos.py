"""The chaos soak: one connector process on the three-broker cluster, through Toxiproxy, while faults of
every kind land at random, one after another, with the feed growing; judged by the checker at the end.

Used by `dev/soak.py chaos --minutes N`. Everything random follows from the seed (up to timing). The
connector reaches the brokers and the feed only through proxies, so the network faults hit all of its
traffic; the checker reads the brokers directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cdr_stream.config import TopicSettings
from cdr_stream.ops.checker import CheckResult, IdRange
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.cluster import NODES, Cluster
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    check,
    logged_offset,
    settings_for,
    write_config,
)
from tests.integration.toxiproxy import BLACKHOLE, LATENCY, TRICKLE, Fault, Proxy, Toxiproxy, connection_loss, injected

CONNECTOR_KILL = "connector kill -9"
BROKER_KILL = "broker kill -9"
BROKER_RESTART = "broker restart"
FEED_BURST = "feed burst (rows added at once)"
#: A network fault on the brokers' or the feed's proxies: (kind, proxies, fault, shortest and longest seconds).
NETWORK_FAULTS: tuple[tuple[str, str, Fault, float, float], ...] = (
    ("latency 200 ms-2 s, brokers", "brokers", LATENCY, 3, 12),
    ("latency 200 ms-2 s, feed", "feed", LATENCY, 3, 12),
    ("30% of connections lost, brokers", "brokers", connection_loss(0.3), 3, 12),
    ("blackhole, brokers", "brokers", BLACKHOLE, 3, 15),
    ("blackhole, feed", "feed", BLACKHOLE, 3, 15),
    ("bandwidth 2 KB/s, brokers", "brokers", TRICKLE, 3, 10),
)
KINDS = (CONNECTOR_KILL, BROKER_KILL, BROKER_RESTART, FEED_BURST, *(kind for kind, *_ in NETWORK_FAULTS))
#: The connector's transaction timeout in the soak: below the longest blackhole, so some outlast it.
TRANSACTION_TIMEOUT_MS = 8000


@dataclass
class ChaosReport:
    seed: int
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Seconds from the end of each fault to the connector's next commit, by kind (rows keep arriving).
    recoveries: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    longest_stall: float = 0.0
    unexpected_exits: list[str] = field(default_factory=list)
    final_exit: int | None = None
    result: CheckResult | None = None
    records: int = 0

    @property
    def clean(self) -> bool:
        return self.result is not None and self.result.clean and not self.unexpected_exits and self.final_exit == 0

    def table(self) -> str:
        assert self.result is not None
        rows: list[tuple[str, str]] = [("seed", str(self.seed)), ("minutes", f"{self.seconds / 60:.1f}")]
        rows += [("records in the feed", f"{self.records:,}")]
        rows += [("lost (IDs missing)", str(self.result.missing_count))]
        rows += [("duplicated (IDs seen twice)", str(self.result.duplicate_count))]
        rows += [("out of order within an account", str(self.result.out_of_order_count))]
        rows += [("stored offset == highest committed ID", "yes" if self.result.state_ok else "NO")]
        rows += [("connector exits not caused by the soak", str(len(self.unexpected_exits)))]
        rows += [("exit code of the final SIGTERM", str(self.final_exit))]
        rows += [("longest stall (s without a commit, rows waiting)", f"{self.longest_stall:.1f}")]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += ["", f"{'fault':<34} {'count':>5} {'recovery s: median':>19} {'max':>6}"]
        for kind in KINDS:
            times = sorted(self.recoveries.get(kind, []))
            median = f"{times[len(times) // 2]:.1f}" if times else "-"
            longest = f"{times[-1]:.1f}" if times else "-"
            lines.append(f"{kind:<34} {self.faults.get(kind, 0):>5} {median:>19} {longest:>6}")
        lines.append(f"{'total':<34} {sum(self.faults.values()):>5}")
        return "\n".join(lines)


class _Progress:
    """Follows the connector's log (every process of the run appends to it) for commits."""

    def __init__(self, log: Path, sim: FeedSimulator) -> None:
        self._log = log
        self._sim = sim
        self._read = 0
        self.offset = 0
        self.last_commit = time.monotonic()
        self.longest_stall = 0.0

    def poll(self) -> None:
        if self._log.exists():
            with self._log.open("rb") as file:
                file.seek(self._read)
                new = file.read()
            complete = new[: new.rfind(b"\n") + 1]  # a line still being written is read next time
            self._read += len(complete)
            offset = logged_offset(complete.decode("utf-8", "replace"))
            if offset is not None and offset != self.offset:
                self.offset = offset
                self.last_commit = time.monotonic()
                return
        now = time.monotonic()
        if self.offset < self._sim.max_id:  # rows are waiting and nothing commits
            self.longest_stall = max(self.longest_stall, now - self.last_commit)
        else:
            self.last_commit = now  # caught up: waiting is not a stall

    async def follow(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(0.2)

    async def next_commit_after(self, moment: float, timeout: float = 600) -> float | None:
        """Seconds from `moment` to the first commit after it (None if none within `timeout`)."""
        while time.monotonic() - moment < timeout:
            if self.last_commit > moment:
                return self.last_commit - moment
            await asyncio.sleep(0.1)
        return None


async def _grow(sim: FeedSimulator, rng: random.Random) -> None:
    """The live feed: a few dozen new rows a second (its own random stream, so the faults' stay the seed's)."""
    while True:
        await asyncio.sleep(1)
        sim.add_records(rng.randint(0, 60))


async def chaos_soak(
    cluster: Cluster,
    toxiproxy: Toxiproxy,
    topics: TopicSettings,
    minutes: float,
    seed: int,
    workdir: Path,
    say: Callable[[str], None],
) -> ChaosReport:
    rng = random.Random(seed)
    report = ChaosReport(seed)
    started = time.monotonic()
    feed = SimulatorConfig(
        password=PASSWORD,
        seed=seed,
        records=rng.randint(5_000, 20_000),
        page_size=rng.choice([500, 1000, 3000]),
        invalid_rate=rng.choice([0.0, 0.01]),
        duplicate_rate=rng.choice([0.0, 0.2]),
        out_of_order=rng.random() < 0.5,
        latency_ms=rng.choice([0.0, 50.0]),
    )
    brokers = [
        await toxiproxy.create(f"broker-{node}", cluster.proxy_port(node), cluster.proxied_port(node)) for node in NODES
    ]
    async with FeedSimulator(feed) as sim:
        feed_proxy, url = await toxiproxy.in_front_of("feed", sim.url)
        settings = settings_for(
            sim,
            cluster.proxied_kafka,
            topics,
            url=url,
            read_timeout_seconds=5.0,
            max_rows_per_transaction=rng.choice([100, 250, 500]),
        )
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"transaction_timeout_ms": TRANSACTION_TIMEOUT_MS})}
        )
        config = write_config(workdir / "chaos.toml", settings)
        log = workdir / "connector.log"
        connector = ConnectorProcess.start(config, log)
        progress = _Progress(log, sim)
        following = asyncio.create_task(progress.follow())
        growing = asyncio.create_task(_grow(sim, random.Random(seed + 1)))
        say(f"feed of {feed.records} rows to start with, connector log {log}")

        def alive() -> ConnectorProcess:
            nonlocal connector
            if connector.process.poll() is not None:
                report.unexpected_exits.append(f"exit {connector.process.returncode}: {connector.tail(600)}")
                say(f"  the connector exited by itself ({connector.process.returncode}); started again")
                connector = ConnectorProcess.start(config, log)
            return connector

        async def kill_connector() -> None:
            nonlocal connector
            await alive().kill()
            await asyncio.sleep(rng.uniform(0, 2))
            connector = ConnectorProcess.start(config, log)

        async def kill_broker(clean: bool) -> None:
            node = rng.choice(NODES)
            await (cluster.stop(node) if clean else cluster.kill(node))
            await asyncio.sleep(rng.uniform(1, 10))
            await cluster.start(node)

        async def network(proxies: list[Proxy], what: Fault, seconds: float) -> None:
            async with injected(proxies, what):
                await asyncio.sleep(seconds)

        deadline = started + minutes * 60
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(2, 8))
            alive()
            kind = rng.choice(KINDS)
            action: Awaitable[None]
            if kind == CONNECTOR_KILL:
                action = kill_connector()
            elif kind in (BROKER_KILL, BROKER_RESTART):
                action = kill_broker(clean=kind == BROKER_RESTART)
            elif kind == FEED_BURST:
                sim.add_records(rng.randint(2_000, 10_000))
                action = asyncio.sleep(0)
            else:
                _, target, what, shortest, longest = next(fault for fault in NETWORK_FAULTS if fault[0] == kind)
                proxies = brokers if target == "brokers" else [feed_proxy]
                action = network(proxies, what, rng.uniform(shortest, longest))
            began = time.monotonic()
            await action
            ended = time.monotonic()
            report.faults[kind] += 1
            recovery = await progress.next_commit_after(ended)
            if recovery is not None:
                report.recoveries[kind].append(recovery)
            after = "never" if recovery is None else f"{recovery:.1f} s"
            say(
                f"{time.monotonic() - started:7.1f} s  {kind}: {ended - began:.1f} s, first commit {after} after it; "
                f"offset {progress.offset} of {sim.max_id}"
            )
        growing.cancel()
        say("faults over: every broker up, every proxy clean, the feed no longer grows; finishing it")
        for proxy in [*brokers, feed_proxy]:
            await proxy.clear()
        await cluster.start_all()
        alive()
        with contextlib.suppress(AssertionError):
            await connector.wait_offset(sim.max_id, timeout=300)
        alive()
        await connector.wait_offset(sim.max_id, timeout=300)
        report.final_exit = await connector.stop()
        following.cancel()
        report.longest_stall = progress.longest_stall
        report.records = sim.max_id
        report.result = await check(cluster.kafka, topics, IdRange(1, sim.max_id))
        await toxiproxy.delete(feed_proxy)
    for proxy in brokers:
        await toxiproxy.delete(proxy)
    report.seconds = time.monotonic() - started
    return report
