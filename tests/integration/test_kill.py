"""kill -9 of the connector process at random moments, mid-transaction included, judged by the checker.

Each run is one seed (printed): a feed, a transaction size and a kill moment from just after the start
to well into the catch-up. A successor process then finishes the feed and stops with exit 0, and the
checker requires every ID exactly once, per-account order, and the stored offset at the last ID. Set
CDR_STREAM_KILL_SEED to replay a run; `dev/soak.py kill --runs 200` runs many more.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from tests.integration.harness import CATCHING_UP, KillRun, kill_run

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]

RUNS = 20
_runs: list[KillRun] = []


@pytest.mark.parametrize("run", range(RUNS))
async def test_kill_9_at_a_random_moment_loses_and_duplicates_nothing(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, run: int
) -> None:
    replay = os.environ.get("CDR_STREAM_KILL_SEED")
    seed = int(replay) if replay else random.randrange(1 << 31)
    print(f"kill -9 run {run}: seed {seed} (replay: CDR_STREAM_KILL_SEED={seed})")
    outcome = await kill_run(kafka, topics, seed, tmp_path)
    print(outcome.line())
    print(outcome.result.summary())
    _runs.append(outcome)
    assert outcome.restart_exit == 0
    assert outcome.result.clean, outcome.result.summary()


def test_the_kills_hit_open_transactions_and_the_catch_up() -> None:
    """The runs above are only worth something if some kills landed mid-transaction during the catch-up."""
    assert len(_runs) == RUNS, "run the whole file: this judges the runs above"
    assert sum(1 for run in _runs if run.open_transaction) >= 2, [run.line() for run in _runs]
    assert sum(1 for run in _runs if run.phase == CATCHING_UP) >= 5, [run.line() for run in _runs]
