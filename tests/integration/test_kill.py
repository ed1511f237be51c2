"""kill -9 of the connector process at random moments, mid-transaction included, judged by the checker.

Each run is one seed (printed): a feed, a transaction size and a kill moment, from just after the start
to well into the catch-up, or aimed at an open transaction (see tests/integration/harness.py). A
successor process then finishes the feed and stops with exit 0, and the checker requires every ID
exactly once, per-account order, and the stored offset at the last ID. CDR_STREAM_KILL_SEEDS (comma
separated) replays given seeds; `dev/soak.py kill --runs 200` runs many more.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings
from tests.integration.harness import CATCHING_UP, KillRun, kill_run
from tests.integration.support import delete_topics, fresh_topics

pytestmark = pytest.mark.kafka

RUNS = 20


def seeds() -> list[int]:
    replay = os.environ.get("CDR_STREAM_KILL_SEEDS")
    if replay:
        return [int(seed) for seed in replay.split(",")]
    return [random.randrange(1 << 31) for _ in range(RUNS)]


async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(kafka: KafkaSettings, tmp_path: Path) -> None:
    runs: list[KillRun] = []
    for number, seed in enumerate(seeds(), 1):
        topics = fresh_topics("kill")
        print(f"run {number}: seed {seed} (replay: CDR_STREAM_KILL_SEEDS={seed})", flush=True)
        run = await kill_run(kafka, topics, seed, tmp_path)
        print(f"  {run.line()}", flush=True)
        if not run.clean:
            print(run.result.summary(), flush=True)  # its topics stay for a look
        else:
            await delete_topics(kafka, topics)
        runs.append(run)
    failed = [run.line() + "\n" + run.result.summary() for run in runs if not run.clean]
    assert not failed, "\n".join(failed)
    lines = "\n".join(run.line() for run in runs)
    if len(runs) == RUNS:  # the full set, not a replay: its kills must have hit what they are for
        assert sum(1 for run in runs if run.open_transaction) >= 3, f"too few kills mid-transaction:\n{lines}"
        assert sum(1 for run in runs if run.phase == CATCHING_UP) >= 5, f"too few kills mid catch-up:\n{lines}"
