"""Peers benchmark: cdr-stream's catch-up beside plain scripts and Kafka's own producer benchmark, in one run.

    .venv/bin/python dev/bench/peers.py [--records 1000000] [--page-size 10000] [--repeat 1] [--only NAME ...]
                                        [--no-warm-up]

First an unmeasured warm-up (ProducerPerformance with transactions, 500,000 records) brings the broker's
hot paths to speed, so that the first peer does not pay for them. Then one preloaded simulator serves the
same rows to every peer, one peer at a time, each into fresh topics on the local broker (6 partitions for
events, acks=all):

- cdr-stream: `cdr-stream run`, measured exactly as dev/bench/catchup.py measures it with --topics-exist
  (its topics made by its own code before the clock starts, as every other peer's are);
- confluent-tx / confluent: dev/bench/naive_confluent.py (aiohttp + orjson + confluent-kafka), one
  transaction per answer with its last ID, or acks=all and a flush per answer without transactions;
- aiokafka: dev/bench/naive_aiokafka.py, aiokafka `send` per row, no transactions;
- perf-tx / perf: Kafka's org.apache.kafka.tools.ProducerPerformance (kafka-producer-perf-test) from the
  broker's jars, 631-byte records, with --transaction-duration-ms 200 or without transactions.

For each it prints records/s (N / wall seconds from process start), CPU seconds per million records,
peak RSS, and the ratios to cdr-stream. Every output is then read back with a read_committed consumer:
the scripts' topics must hold every ID 1..N once, the tool's topic N records; a peer that fails the
check is marked FAILED and gets no ratio. See dev/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import catchup
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from catchup import BenchError, IdTally, Topics

HERE: Final = Path(__file__).resolve().parent
EVENTS_PARTITIONS: Final = 6
# The record size of the figures in issue 14; a feed row as the scripts send it is about 555 bytes of JSON.
RECORD_SIZE: Final = 631
TRANSACTION_MS: Final = 200
# kafka-producer-perf-test.sh runs the tool with this heap; the same here.
PERF_HEAP: Final = "-Xmx512M"
PERF_SUMMARY: Final = re.compile(r"^\d+ records sent, ([\d.]+) records/sec", re.MULTILINE)


@dataclass
class PeerResult:
    name: str
    records: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    load: float  # 1-minute load average when the peer started
    broker_cpu_seconds: float = 0.0
    read_back: int = 0
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_million(self) -> float:
        return self.cpu_seconds * 1_000_000 / self.records


@dataclass
class Bench:
    records: int
    bootstrap: str
    ctx: catchup.RunContext
    perf_classpath: str
    chunk_rows: int
    timeout: float

    @property
    def kafka(self) -> catchup.KafkaSettings:
        return catchup.KafkaSettings(bootstrap_servers=self.bootstrap)


# --- running a peer process ----------------------------------------------------------------------------


@dataclass
class Usage:
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    exit_code: int


def run_measured(argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> Usage:
    """Run `argv` to its end; wall seconds, and its own CPU time and peak RSS from wait4's rusage."""
    with log_path.open("ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    seconds = time.monotonic() - started
    if seconds >= timeout:
        raise BenchError(f"{argv[0]} did not finish within {timeout:g} s; see {log_path}")
    # ru_maxrss is in kB on Linux.
    return Usage(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))


async def create_topics(bootstrap: str, topics: Topics) -> None:
    """The peers' topics, made as the connector makes its own: 6 event partitions, a 1-partition state topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.events, EVENTS_PARTITIONS, 1),
                NewTopic(topics.state, 1, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()


@dataclass
class RecordCount:
    """A tally for the tool's records, which carry no ID: only how many there are."""

    records: int = 0

    def add(self, value: bytes | None) -> None:
        self.records += 1


async def check_ids(bench: Bench, result: PeerResult, topic: str) -> None:
    """The topic holds every ID 1..N exactly once, as a read_committed consumer sees it."""
    tally = IdTally(bytearray(bench.records + 1), id_field="ID")
    result.read_back = await catchup.read_topic(bench.kafka, topic, tally)
    checks = [
        (tally.records == bench.records, f"read back {tally.records} records, not {bench.records}"),
        (tally.duplicates == 0, f"{tally.duplicates} IDs appear more than once"),
        (tally.missing() == 0, f"{tally.missing()} IDs missing: {', '.join(tally.missing_ranges())}"),
        (tally.out_of_range + tally.without_id == 0, f"{tally.out_of_range + tally.without_id} records, no valid ID"),
    ]
    result.problems += [message for ok, message in checks if not ok]


async def check_count(bench: Bench, result: PeerResult, topic: str) -> None:
    tally = RecordCount()
    result.read_back = await catchup.read_topic(bench.kafka, topic, tally)
    if tally.records != bench.records:
        result.problems.append(f"read back {tally.records} records, not {bench.records}")


async def run_peer(
    bench: Bench,
    name: str,
    argv: Callable[[Topics], list[str]],
    check: Callable[[Bench, PeerResult, str], Coroutine[Any, Any, None]],
    keep_topics: bool,
) -> PeerResult:
    topics = Topics.fresh()
    await create_topics(bench.bootstrap, topics)
    load = os.getloadavg()[0]
    log_path = bench.ctx.workdir / f"{name}.log"
    result: PeerResult | None = None
    try:
        broker_before = catchup.cpu_seconds(bench.ctx.broker_pid)
        usage = await asyncio.to_thread(run_measured, argv(topics), bench.ctx.env, log_path, bench.timeout)
        broker_cpu = catchup.cpu_seconds(bench.ctx.broker_pid) - broker_before
        result = PeerResult(name, bench.records, usage.seconds, usage.cpu_seconds, usage.peak_rss_mb, load, broker_cpu)
        output = log_path.read_text(errors="replace")
        if usage.exit_code != 0:
            result.problems.append(f"exit code {usage.exit_code}; see {log_path}")
        if found := PERF_SUMMARY.findall(output):
            result.note = f"tool's own figure {float(found[-1]):,.0f} records/s"
        await check(bench, result, topics.events)
        return result
    finally:
        # As in catchup.py, the topics of a run that failed its check stay for inspection.
        if keep_topics or (result is not None and result.problems):
            print(f"kept topics: {', '.join(topics.all())}", flush=True)
        else:
            await catchup.delete_topics(bench.bootstrap, topics.all())


# --- the peers -----------------------------------------------------------------------------------------


def script_argv(bench: Bench, script: str, *extra: str) -> Callable[[Topics], list[str]]:
    def argv(topics: Topics) -> list[str]:
        return [
            sys.executable,
            str(HERE / script),
            *("--url", bench.ctx.sim.url, "--login", catchup.LOGIN, "--bootstrap", bench.bootstrap),
            *("--topic", topics.events, "--state-topic", topics.state),
            *extra,
        ]

    return argv


def perf_argv(bench: Bench, transactions: bool) -> Callable[[Topics], list[str]]:
    def argv(topics: Topics) -> list[str]:
        tool = ["java", PERF_HEAP, "-cp", bench.perf_classpath]
        tool += [f"-Dlog4j2.configurationFile={catchup.REPO / 'dev' / 'kafka' / 'log4j2-tools.xml'}"]
        tool += ["org.apache.kafka.tools.ProducerPerformance", "--bootstrap-server", bench.bootstrap]
        tool += ["--topic", topics.events, "--num-records", str(bench.records), "--record-size", str(RECORD_SIZE)]
        tool += ["--throughput", "-1", "--command-property", "acks=all"]
        if transactions:
            tool += ["--transactional-id", f"{topics.tag}-perf", "--transaction-duration-ms", str(TRANSACTION_MS)]
        return tool

    return argv


async def run_cdr_stream(bench: Bench, keep_topics: bool) -> PeerResult:
    load = os.getloadavg()[0]
    r = await catchup.run_once(bench.ctx, bench.chunk_rows, keep_topics)
    result = PeerResult("cdr-stream", r.records, r.seconds, r.cpu_seconds, r.peak_rss_mb, load, r.broker_cpu_seconds)
    result.read_back = r.events + r.dead_letters
    result.problems = list(r.problems)
    return result


PEERS: Final = ("cdr-stream", "confluent-tx", "confluent", "aiokafka", "perf-tx", "perf")
#: Records of the unmeasured warm-up before the peers.
WARM_UP_RECORDS: Final = 500_000


async def warm_up(bench: Bench) -> None:
    """Kafka's producer benchmark with transactions, not measured, before the peers. A broker just started
    spends seconds of CPU compiling its hot paths, and the first peer measured would pay for them: cdr-stream,
    first, ran at 0.73 to 0.82 of its later rate, with the broker using 12.4 CPU s against 2.6."""
    print(f"\n--- warm-up: ProducerPerformance, transactions, {WARM_UP_RECORDS:,} records, not measured", flush=True)
    topics = Topics.fresh()
    await create_topics(bench.bootstrap, topics)
    try:
        argv = perf_argv(replace(bench, records=WARM_UP_RECORDS), True)(topics)
        log_path = bench.ctx.workdir / "warm-up.log"
        usage = await asyncio.to_thread(run_measured, argv, bench.ctx.env, log_path, bench.timeout)
        if usage.exit_code != 0:
            raise BenchError(f"the warm-up failed with exit code {usage.exit_code}; see {log_path}")
    finally:
        await catchup.delete_topics(bench.bootstrap, topics.all())


async def run_named(bench: Bench, name: str, keep_topics: bool) -> PeerResult:
    print(f"\n--- {name} (load {os.getloadavg()[0]:.2f})", flush=True)
    if name == "cdr-stream":
        result = await run_cdr_stream(bench, keep_topics)
    elif name == "confluent-tx":
        tx_id = f"naive-{secrets.token_hex(3)}"
        argv = script_argv(bench, "naive_confluent.py", "--transactional-id", tx_id)
        result = await run_peer(bench, name, argv, check_ids, keep_topics)
    elif name == "confluent":
        argv = script_argv(bench, "naive_confluent.py", "--no-transactions")
        result = await run_peer(bench, name, argv, check_ids, keep_topics)
    elif name == "aiokafka":
        result = await run_peer(bench, name, script_argv(bench, "naive_aiokafka.py"), check_ids, keep_topics)
    else:
        result = await run_peer(bench, name, perf_argv(bench, name == "perf-tx"), check_count, keep_topics)
    verdict = "OK" if not result.problems else "FAILED: " + "; ".join(result.problems)
    print(
        f"{name}: {result.seconds:.2f} s, {result.rate:,.0f} records/s, CPU {result.cpu_seconds:.1f} s, "
        f"peak RSS {result.peak_rss_mb:.1f} MB, read back {result.read_back}; {verdict}",
        flush=True,
    )
    return result


# --- report --------------------------------------------------------------------------------------------


def median_by_peer(results: list[PeerResult]) -> dict[str, PeerResult]:
    """Per peer, the run with the median records/s (a peer with a failed run keeps that failure)."""
    chosen: dict[str, PeerResult] = {}
    for name in dict.fromkeys(r.name for r in results):
        runs = sorted((r for r in results if r.name == name), key=lambda r: r.rate)
        failed = [r for r in runs if r.problems]
        chosen[name] = failed[0] if failed else runs[(len(runs) - 1) // 2]
    return chosen


def print_table(results: list[PeerResult], records: int, repeat: int, code: str) -> None:
    chosen = median_by_peer(results)
    base = chosen.get("cdr-stream")
    title = f"{records:,} rows, median of {repeat}" if repeat > 1 else f"{records:,} rows"
    print(f"\ncode {code}, {os.cpu_count()} CPUs, {title}; ratios are the peer's figure / cdr-stream's")
    header = (
        f"{'peer':<13} {'records/s':>10} {'seconds':>8} {'CPU s/1M':>9} {'peak RSS MB':>11} {'load':>5} "
        f"{'rate vs cdr':>11} {'CPU vs cdr':>10} {'broker CPU s':>12} {'read back':>10}  verdict"
    )
    print(header)
    for r in chosen.values():
        comparable = base is not None and not base.problems and not r.problems
        rate_ratio = f"{r.rate / base.rate:.2f}x" if comparable and base else "-"
        cpu_ratio = f"{r.cpu_per_million / base.cpu_per_million:.2f}x" if comparable and base else "-"
        verdict = "OK" if not r.problems else "FAILED"
        print(
            f"{r.name:<13} {r.rate:>10,.0f} {r.seconds:>8.2f} {r.cpu_per_million:>9.1f} {r.peak_rss_mb:>11.1f} "
            f"{r.load:>5.2f} {rate_ratio:>11} {cpu_ratio:>10} {r.broker_cpu_seconds:>12.1f} {r.read_back:>10}  "
            f"{verdict}" + (f"  ({r.note})" if r.note else "")
        )
    if repeat > 1:
        for name in chosen:
            rates = ", ".join(f"{r.rate:,.0f}" for r in results if r.name == name)
            print(f"{name}: records/s of each run: {rates}")
    for r in results:
        for problem in r.problems:
            print(f"{r.name}: {problem}")


# --- main ----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="rows in the backlog (N)")
    parser.add_argument("--page-size", type=int, default=10_000, help="rows per feed answer, 0 = all in one")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="cdr-stream's max_rows_per_transaction")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every peer against the same simulator")
    parser.add_argument("--only", nargs="+", choices=PEERS, default=list(PEERS), help="run only these peers")
    parser.add_argument("--keep-topics", action="store_true", help="leave the benchmark's topics behind")
    parser.add_argument("--no-warm-up", action="store_true", help="measure the first peer on a cold broker")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one peer may take")
    return parser.parse_args()


async def bench_all(args: argparse.Namespace, workdir: Path) -> list[PeerResult]:
    bootstrap = catchup.start_broker()
    pid = catchup.broker_pid()
    classpath = catchup.broker_classpath(pid)
    if classpath is None:
        raise BenchError(f"cannot read the broker's classpath from /proc/{pid}/cmdline")
    env = catchup.child_env(secrets.token_urlsafe(18))
    # The simulator as catchup.py starts it: the same JSON rows, in ID order, none broken.
    sim_args = argparse.Namespace(records=args.records, page_size=args.page_size, invalid_rate=0.0, out_of_order=False)
    sim = await catchup.start_simulator(sim_args, env, workdir)
    ctx = catchup.RunContext(
        records=args.records,
        page_size=args.page_size,
        bootstrap=bootstrap,
        sim=sim,
        env=env,
        workdir=workdir,
        timeout=args.timeout,
        broker_pid=pid,
        topics_exist=True,  # as every other peer's topics, made before its clock starts
    )
    bench = Bench(args.records, bootstrap, ctx, classpath, args.chunk_rows, args.timeout)
    results: list[PeerResult] = []
    try:
        if not args.no_warm_up:
            await warm_up(bench)
        for _ in range(args.repeat):
            for name in args.only:
                results.append(await run_named(bench, name, args.keep_topics))
        return results
    finally:
        await sim.child.terminate()


def main() -> int:
    args = parse_args()

    def work(workdir: Path) -> bool:
        code = catchup.code_version()
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
        results = asyncio.run(bench_all(args, workdir))
        print_table(results, args.records, args.repeat, code)
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
        return all(not r.problems for r in results)

    return catchup.run_in_workdir("cdr-peers-", work)


if __name__ == "__main__":
    sys.exit(main())
