"""One kill -9 run: the connector as a process, killed at a random moment, restarted, and judged.

Half of the runs kill at a random moment from just after the start into the catch-up. The other half
aim at an open transaction: the records of one are on the broker for only a few milliseconds of every
commit, so a run freezes the process (SIGSTOP) at random moments, looks whether a transaction is open,
and kills it (kill -9 works on a frozen process) as soon as one is, else lets it go on (SIGCONT).

Shared by tests/integration/test_kill.py (a few dozen runs) and dev/soak.py (hundreds). Everything a
run does follows from its seed: the feed (size, page size, bad rows, duplicates), the transaction size
and the kill moment, so a failing seed replays the same run (up to timing).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.errors import TopicMissingError
from cdr_stream.ops.checker import CheckResult, IdRange
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    TransactionProbe,
    check,
    settings_for,
    write_config,
)

STARTING = "starting"
CATCHING_UP = "catching up"
CAUGHT_UP = "caught up"


@dataclass(frozen=True, slots=True)
class KillRun:
    seed: int
    records: int
    aimed: bool
    kill_after: float
    #: What the killed process was doing: starting (no offset yet), catching up, or caught up.
    phase: str
    #: Partitions that held records of an open transaction right after the kill (it was mid-transaction).
    open_transaction: tuple[str, ...]
    offset_at_kill: int | None
    restart_exit: int
    #: How long the restarted process took to exit after its SIGTERM (the requirement: within 10 s).
    stop_seconds: float
    result: CheckResult
    seconds: float

    @property
    def clean(self) -> bool:
        return self.result.clean and self.restart_exit == 0 and self.stop_seconds < 10

    def line(self) -> str:
        transaction = f"open transaction in {len(self.open_transaction)} partition(s)" if self.open_transaction else ""
        aim = "aimed at a transaction, " if self.aimed else ""
        return (
            f"seed {self.seed}: {self.records} records, {aim}kill -9 after {self.kill_after:.2f} s while "
            f"{self.phase} (offset {self.offset_at_kill}){', ' + transaction if transaction else ''}; "
            f"restart exit {self.restart_exit} after {self.stop_seconds:.1f} s; "
            f"check {'clean' if self.result.clean else 'FAILED'} ({self.seconds:.1f} s)"
        )


@dataclass(frozen=True, slots=True)
class RunPlan:
    feed: SimulatorConfig
    feed_settings: dict[str, Any]
    #: Kill at `kill_after` s, or (aimed) look for an open transaction from `kill_after` s after the first offset.
    aimed: bool
    kill_after: float
    rng: random.Random


def run_plan(seed: int) -> RunPlan:
    """Everything a run does, from its seed."""
    rng = random.Random(seed)
    page_size = rng.choice([250, 1000, 3000, 0])
    chunk = rng.choice([50, 100, 250])
    feed = SimulatorConfig(
        password=PASSWORD,
        seed=seed,
        records=rng.randint(5000, 12000),
        page_size=page_size,
        invalid_rate=rng.choice([0.0, 0.02]),
        duplicate_rate=rng.choice([0.0, 0.3]),
        resend_rate=rng.choice([0.0, 0.3]),
        # Shuffled pages, and shuffled single answers (sorted on disk when larger than 10,000 rows).
        out_of_order=rng.random() < 0.5,
        latency_ms=rng.choice([0.0, 20.0]),
    )
    aimed = rng.random() < 0.5
    # Unaimed: from just after the start (the process is still setting up) into the catch-up.
    kill_after = rng.uniform(0.0, 1.0) if aimed else rng.uniform(0.2, 3.5)
    return RunPlan(feed, {"max_rows_per_transaction": chunk}, aimed, kill_after, rng)


_AIM_SECONDS = 3.0


async def aim_at_a_transaction(
    victim: ConnectorProcess, probe: TransactionProbe, rng: random.Random, seconds: float = _AIM_SECONDS
) -> list[str]:
    """Freeze the process at random moments until one finds a transaction open (or time is up): the
    partitions holding its records, the process left frozen (SIGSTOP); or [] and the process running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and victim.process.poll() is None:
        os.kill(victim.pid, signal.SIGSTOP)
        if found := await probe.open_partitions():
            return found  # frozen mid-transaction: the fault lands there
        os.kill(victim.pid, signal.SIGCONT)
        await asyncio.sleep(rng.uniform(0.0, 0.05))
    return []


async def _open_transaction(kafka: KafkaSettings, topics: TopicSettings) -> tuple[str, ...]:
    try:
        async with TransactionProbe(kafka, topics) as probe:
            return tuple(await probe.open_partitions())
    except TopicMissingError:  # killed before it created the topics
        return ()


async def kill_run(kafka: KafkaSettings, topics: TopicSettings, seed: int, workdir: Path) -> KillRun:
    started = time.monotonic()
    plan = run_plan(seed)
    log = workdir / f"connector-{seed}.log"
    async with FeedSimulator(plan.feed) as sim:
        settings = settings_for(sim, kafka, topics, **plan.feed_settings)
        config = write_config(workdir / f"config-{seed}.toml", settings)
        victim = ConnectorProcess.start(config, log)
        victim_started = time.monotonic()
        if plan.aimed:
            await victim.wait_offset(0)  # streaming: the topics exist
            await asyncio.sleep(plan.kill_after)
            async with TransactionProbe(kafka, topics) as probe:
                await aim_at_a_transaction(victim, probe, plan.rng)
        else:
            await asyncio.sleep(plan.kill_after)
        killed_after = time.monotonic() - victim_started
        offset = victim.offset()
        await victim.kill()
        phase = STARTING if offset is None else CAUGHT_UP if offset >= sim.max_id else CATCHING_UP
        open_transaction = await _open_transaction(kafka, topics)
        successor = ConnectorProcess.start(config, log)
        await successor.wait_offset(sim.max_id, timeout=120)
        stopping = time.monotonic()
        exit_code = await successor.stop()
        stop_seconds = time.monotonic() - stopping
        result = await check(kafka, topics, IdRange(1, sim.max_id))
    return KillRun(
        seed=seed,
        records=plan.feed.records,
        aimed=plan.aimed,
        kill_after=killed_after,
        phase=phase,
        open_transaction=open_transaction,
        offset_at_kill=offset,
        restart_exit=exit_code,
        stop_seconds=stop_seconds,
        result=result,
        seconds=time.monotonic() - started,
    )
