"""One kill -9 run: the connector as a process, killed at a random moment, restarted, and judged.

Shared by tests/integration/test_kill.py (a few dozen runs) and dev/soak.py (hundreds). Everything a
run does follows from its seed: the feed (size, page size, bad rows, duplicates), the transaction size
and the kill moment, so a failing seed replays the same run (up to timing).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdr_stream.checker import CheckResult, IdRange
from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.readback import TopicMissingError
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    check,
    open_transaction_partitions,
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
    kill_after: float
    #: What the killed process was doing: starting (no offset yet), catching up, or caught up.
    phase: str
    #: Partitions that held records of an open transaction right after the kill (it was mid-transaction).
    open_transaction: tuple[str, ...]
    offset_at_kill: int | None
    restart_exit: int
    result: CheckResult
    seconds: float

    @property
    def clean(self) -> bool:
        return self.result.clean and self.restart_exit == 0

    def line(self) -> str:
        transaction = f"open transaction in {len(self.open_transaction)} partition(s)" if self.open_transaction else ""
        return (
            f"seed {self.seed}: {self.records} records, kill -9 after {self.kill_after:.2f} s while "
            f"{self.phase} (offset {self.offset_at_kill}){', ' + transaction if transaction else ''}; "
            f"restart exit {self.restart_exit}; check {'clean' if self.result.clean else 'FAILED'} "
            f"({self.seconds:.1f} s)"
        )


def run_plan(seed: int) -> tuple[SimulatorConfig, dict[str, Any], float]:
    """The feed, the feed settings and the kill moment of a run."""
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
        # Shuffled pages, not a shuffled single answer: an answer streamed beyond 8 MiB cannot be sorted
        # in bounded memory, and must come in ID order (docs/reliability.md).
        out_of_order=page_size > 0 and rng.random() < 0.5,
        latency_ms=rng.choice([0.0, 20.0]),
    )
    settings = {"max_rows_per_transaction": chunk}
    # From just after the start (the process is still setting up) into the catch-up.
    return feed, settings, rng.uniform(0.2, 3.5)


async def kill_run(kafka: KafkaSettings, topics: TopicSettings, seed: int, workdir: Path) -> KillRun:
    started = time.monotonic()
    feed, feed_settings, kill_after = run_plan(seed)
    log = workdir / f"connector-{seed}.log"
    async with FeedSimulator(feed) as sim:
        config = write_config(workdir / f"config-{seed}.toml", settings_for(sim, kafka, topics, **feed_settings))
        victim = ConnectorProcess.start(config, log)
        await asyncio.sleep(kill_after)
        offset = victim.offset()
        await victim.kill()
        phase = STARTING if offset is None else CAUGHT_UP if offset >= sim.max_id else CATCHING_UP
        try:
            open_transaction = tuple(await open_transaction_partitions(kafka, topics))
        except TopicMissingError:  # killed before it created the topics
            open_transaction = ()
        successor = ConnectorProcess.start(config, log)
        await successor.wait_offset(sim.max_id, timeout=120)
        exit_code = await successor.stop()
        result = await check(kafka, topics, IdRange(1, sim.max_id))
    return KillRun(
        seed=seed,
        records=feed.records,
        kill_after=kill_after,
        phase=phase,
        open_transaction=open_transaction,
        offset_at_kill=offset,
        restart_exit=exit_code,
        result=result,
        seconds=time.monotonic() - started,
    )
