"""Soak: many kill -9 runs of the connector process, or an hour of mixed faults, judged by the checker.

    .venv/bin/python dev/soak.py kill [--runs 200] [--seed N] [--workdir DIR]
    .venv/bin/python dev/soak.py chaos [--minutes 60] [--seed N] [--workdir DIR]

chaos: one connector process on the three-broker cluster (dev/kafka/cluster), reaching the brokers and the
feed through Toxiproxy (dev/toxiproxy/install), while connector kills, broker kills and restarts, network
faults and feed growth land at random (tests/integration/chaos.py); then the feed is finished and judged.
It prints the seed, a line per fault, and a table: faults by kind, records, lost, duplicated, the longest
stall and the recovery time after each kind of fault. Exit code 0 only if the checker found nothing.

Each run (tests/integration/harness.py) starts a simulated feed and `cdr-stream run` on fresh topics,
kills the process with kill -9 at a random moment (half of the runs aim at an open transaction),
restarts it, lets it finish the feed and stop with exit 0, and then the checker reads everything back
with read_committed: every ID exactly once, in order per account, the stored offset at the last ID.
It prints one line per run with its seed (CDR_STREAM_KILL_SEEDS=<seed> in tests/integration/test_kill.py
replays it) and a summary table; the exit code is 0 only if every run was clean. The topics of a clean
run are deleted; those of a failed run are kept, and its log stays in the work directory.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the harness lives with the integration tests

from cdr_stream.config import KafkaSettings  # noqa: E402 - after the path set-up above
from tests.integration.chaos import chaos_soak  # noqa: E402
from tests.integration.cluster import Cluster, cluster_base_port  # noqa: E402
from tests.integration.harness import CATCHING_UP, CAUGHT_UP, STARTING, KillRun, kill_run  # noqa: E402
from tests.integration.support import delete_topics, fresh_topics, kill_leftovers  # noqa: E402
from tests.integration.toxiproxy import Toxiproxy  # noqa: E402

BROKER: Final = REPO / "dev" / "kafka" / "broker"


def start_broker() -> str:
    """Start the local broker (or reuse it); its bootstrap address."""
    subprocess.run([str(BROKER), "start"], check=True)
    return subprocess.run([str(BROKER), "status"], check=True, capture_output=True, text=True).stdout.strip()


def summary(runs: list[KillRun], seconds: float) -> str:
    phases = Counter(run.phase for run in runs)
    rows = [
        ("runs", len(runs)),
        ("clean (checker clean, restart exit 0 within 10 s)", sum(run.clean for run in runs)),
        ("failed", sum(not run.clean for run in runs)),
        (f"killed while {STARTING}", phases[STARTING]),
        (f"killed while {CATCHING_UP}", phases[CATCHING_UP]),
        (f"killed while {CAUGHT_UP}", phases[CAUGHT_UP]),
        ("aimed at an open transaction", sum(run.aimed for run in runs)),
        ("killed with a transaction open", sum(bool(run.open_transaction) for run in runs)),
        ("records in the feeds", sum(run.records for run in runs)),
        ("IDs missing", sum(run.result.missing_count for run in runs)),
        ("IDs seen more than once", sum(run.result.duplicate_count for run in runs)),
        ("IDs out of order within an account", sum(run.result.out_of_order_count for run in runs)),
        ("stored offset != highest committed ID", sum(not run.result.state_ok for run in runs)),
        ("restart exit code != 0", sum(run.restart_exit != 0 for run in runs)),
        ("seconds", round(seconds)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':-<{width + 12}}", *(f"{name:<{width}}  {value:>10}" for name, value in rows)]
    return "\n".join([*lines, lines[0]])


async def soak_kill(kafka: KafkaSettings, runs: int, seed: int, workdir: Path) -> int:
    print(f"kill -9 soak: {runs} runs, base seed {seed}, broker {kafka.bootstrap_servers}, work dir {workdir}")
    rng = random.Random(seed)
    done: list[KillRun] = []
    started = time.monotonic()
    try:
        for number in range(1, runs + 1):
            run_seed = rng.randrange(1 << 31)
            topics = fresh_topics("soak")
            try:
                run = await kill_run(kafka, topics, run_seed, workdir)
            finally:
                kill_leftovers()
            done.append(run)
            print(f"run {number:>4}/{runs} {run.line()}", flush=True)
            if run.clean:
                await delete_topics(kafka, topics)
            else:
                print(f"  topics kept: {topics.events}, {topics.dead_letter}, {topics.state}")
                print("  " + run.result.summary().replace("\n", "\n  "), flush=True)
    except KeyboardInterrupt:
        print("interrupted")
    print(summary(done, time.monotonic() - started))
    return 0 if done and all(run.clean for run in done) else 1


async def soak_chaos(minutes: float, seed: int, workdir: Path) -> int:
    cluster = Cluster(cluster_base_port())
    print(f"chaos soak: {minutes:g} minutes, seed {seed} (replay: --seed {seed}), work dir {workdir}", flush=True)
    await cluster.arun("start")
    toxiproxy = Toxiproxy.start(cluster.spare_port, workdir / "toxiproxy.log")
    topics = fresh_topics("chaos")
    try:
        report = await chaos_soak(
            cluster, toxiproxy, topics, minutes, seed, workdir, lambda line: print(line, flush=True)
        )
    finally:
        kill_leftovers()
        toxiproxy.stop()
    print(report.table())
    for exit_line in report.unexpected_exits:
        print(f"unexpected exit: {exit_line}")
    if report.clean:
        await delete_topics(cluster.kafka, topics)
    else:
        print(f"topics kept: {topics.events}, {topics.dead_letter}, {topics.state}")
        assert report.result is not None
        print(report.result.summary())
    print(f"the cluster keeps running: dev/kafka/cluster stop (KAFKA_CLUSTER_PORT={cluster.base_port})")
    return 0 if report.clean else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="dev/soak.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    kill = commands.add_parser("kill", help="kill -9 runs judged by the checker")
    kill.add_argument("--runs", type=int, default=200, help="number of runs (default %(default)s)")
    chaos = commands.add_parser("chaos", help="mixed faults on the three-broker cluster, judged by the checker")
    chaos.add_argument("--minutes", type=float, default=60, help="how long faults are injected (default %(default)s)")
    for command in (kill, chaos):
        command.add_argument("--seed", type=int, default=None, help="base seed; everything random follows from it")
        command.add_argument("--workdir", type=Path, default=None, help="configs and logs (default: a temp dir)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cdr-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.command == "chaos":
        return asyncio.run(soak_chaos(args.minutes, seed, workdir))
    kafka = KafkaSettings(bootstrap_servers=start_broker())
    return asyncio.run(soak_kill(kafka, args.runs, seed, workdir))


if __name__ == "__main__":
    sys.exit(main())
