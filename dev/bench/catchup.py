"""Catch-up benchmark: how fast does `cdr-stream run` move a backlog of N rows into Kafka, end to end?

    .venv/bin/python dev/bench/catchup.py [--records 1000000] [--page-size 10000] [--repeat 1] [--keep-topics]
                                          [--topics-exist]

Each run: the local broker (started if needed), a preloaded simulator in its own process, and the
connector in its own process with fresh, uniquely named topics (the connector creates them, or with
--topics-exist the connector's own code does before the clock starts, as for a deployment that ran
before). The clock
starts when the connector process starts and stops when its progress log reports IDs up to N
committed; the stored offset is then checked in the state topic. The connector's peak RSS (VmHWM) is
read just before SIGTERM, and it must exit 0 within 10 s. Afterwards a read_committed consumer reads
the events and dead-letter topics to the end and checks that every ID 1..N arrived exactly once (not
timed). See dev/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.kafka.readback import committed_records
from cdr_stream.kafka.state import read_offsets
from cdr_stream.kafka.topics import prepare_topics

REPO: Final = Path(__file__).resolve().parents[2]
BROKER: Final = REPO / "dev" / "kafka" / "broker"
CLI: Final = Path(sys.executable).parent / "cdr-stream"
PASSWORD_ENV: Final = "CDR_BENCH_FEED_PASSWORD"  # noqa: S105 - the name of a variable, not a password
LOGIN: Final = "demo"
FEED: Final = "bench"
COMMITTED: Final = re.compile(rb"feed \S+ committed IDs \d+\.\.(\d+):")
EXPECTED_WARNING: Final = b"poll_interval_seconds="
SAMPLE_SECONDS: Final = 0.1
STOP_SECONDS: Final = 10.0
SIM_READY_SECONDS: Final = 300.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The run could not be measured or its output is wrong; the message says what happened."""


# --- child processes -----------------------------------------------------------------------------------


@dataclass
class Child:
    """A child process in its own process group (so a kill reaches whatever it started)."""

    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM the group, then SIGKILL it if it has not exited within `grace` seconds."""
        if not self.alive():
            return
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
                return


async def spawn(argv: list[str], env: dict[str, str], log_path: Path, *, pipe: bool) -> Child:
    """Start `argv` in a new session; stderr goes to a pipe (to be read) or with stdout to `log_path`."""
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.PIPE if pipe else log,
            start_new_session=True,
        )
    return Child(proc)


def child_env(password: str) -> dict[str, str]:
    # CDR_STREAM_* variables would override the generated configuration; the benchmark wants its own.
    # CDR_STREAM_PURE_PYTHON is no setting: it chooses the C fast path or the Python one (for a comparison).
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CDR_STREAM_") or key == "CDR_STREAM_PURE_PYTHON"
    }
    env[PASSWORD_ENV] = password
    # The checkout's code, whatever cdr-stream the virtualenv has installed (another checkout's, an older one).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS, VmHWM...); empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    figures: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            figures[name] = int(value.split()[0])
    return figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --- broker and simulator ------------------------------------------------------------------------------


def start_broker() -> str:
    """Start (or reuse) the local broker; its bootstrap address."""
    try:
        subprocess.run([str(BROKER), "start"], check=True)
        status = subprocess.run([str(BROKER), "status"], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"the broker did not start ({exc}); see dev/kafka/README.md") from None
    return status.stdout.strip()


def broker_pid() -> int:
    pid = subprocess.run([str(BROKER), "pid"], capture_output=True, text=True, check=True).stdout
    return int(pid)


def broker_classpath(pid: int) -> str | None:
    """The classpath the running broker was started with (the fetched Kafka jars)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return argv[argv.index("-cp") + 1]
    except (OSError, ValueError, IndexError):
        return None


def broker_version(pid: int) -> str:
    """The Kafka version of the running broker, from the jars on its classpath."""
    classpath = broker_classpath(pid)
    if classpath is None:
        return "unknown"
    for entry in classpath.split(":"):
        for jar in Path(entry.removesuffix("*")).glob("kafka_2.*.jar"):
            found = re.fullmatch(r"kafka_2\.\d+-([\d.]+)\.jar", jar.name)
            if found:
                return found.group(1)
    return "unknown"


@dataclass
class Simulator:
    child: Child
    url: str
    stats_url: str

    async def stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as session, session.get(self.stats_url) as response:
            response.raise_for_status()
            stats: dict[str, int] = await response.json()
            return stats


async def start_simulator(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> Simulator:
    port = free_port()
    argv = [str(CLI), "simulate", "--records", str(args.records), "--page-size", str(args.page_size)]
    argv += ["--preload", "--invalid-rate", str(args.invalid_rate)]
    if args.out_of_order:
        argv.append("--out-of-order")
    argv += ["--port", str(port), "--login", LOGIN, "--password-env", PASSWORD_ENV]
    child = await spawn(argv, env, workdir / "simulator.log", pipe=False)
    base = f"http://127.0.0.1:{port}"
    sim = Simulator(child, f"{base}/billingfeed.php", f"{base}/_sim/stats")
    started = time.monotonic()
    while time.monotonic() - started < SIM_READY_SECONDS:
        if not child.alive():
            raise BenchError(f"the simulator exited with {child.proc.returncode}; see {workdir}/simulator.log")
        with contextlib.suppress(aiohttp.ClientError):
            stats = await sim.stats()
            print(f"simulator ready in {time.monotonic() - started:.1f} s: {stats}", flush=True)
            return sim
        await asyncio.sleep(0.25)
    raise BenchError(f"the simulator did not answer within {SIM_READY_SECONDS:g} s")


# --- topics --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    events: str
    dead_letter: str
    state: str

    @classmethod
    def fresh(cls) -> Topics:
        tag = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        return cls(f"{tag}.events", f"{tag}.dlq", f"{tag}.state")

    @property
    def tag(self) -> str:
        return self.events.removesuffix(".events")

    def all(self) -> list[str]:
        return [self.events, self.dead_letter, self.state]


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [name for name in names if name in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except KafkaError as exc:
        print(f"warning: could not delete topics {list(names)}: {exc}", file=sys.stderr)
    finally:
        await admin.close()


# --- one run -------------------------------------------------------------------------------------------


def write_config(
    path: Path,
    feed_url: str,
    bootstrap: str,
    topics: Topics,
    chunk_rows: int,
    fmt: str,
    *,
    feeds: Iterable[str] = (FEED,),
    poll_seconds: float = 5,
    http_port: int = 0,
) -> None:
    """A connector config: each of `feeds` reads the simulator; http_port 0 takes any free port."""
    feed_tables = "".join(
        f"""
[[feeds]]
name = "{name}"
url = "{feed_url}"
login = "{LOGIN}"
password_env = "{PASSWORD_ENV}"
poll_interval_seconds = {poll_seconds:g}
max_rows_per_transaction = {chunk_rows}
format = "{fmt}"
"""
        for name in feeds
    )
    path.write_text(
        f"""log_level = "INFO"
tmp_dir = "{path.parent / "spill"}"
http_host = "127.0.0.1"
http_port = {http_port}
{feed_tables}
[kafka]
bootstrap_servers = "{bootstrap}"
transactional_id_prefix = "{topics.tag}"

[topics]
events = "{topics.events}"
dead_letter = "{topics.dead_letter}"
state = "{topics.state}"
""",
        encoding="utf-8",
    )


@dataclass
class Progress:
    """What the connector's log said so far, with the monotonic time each commit line arrived."""

    commits: int = 0
    first_commit: float | None = None
    last_id: int = 0
    last_commit: float | None = None
    warnings: list[str] = field(default_factory=list)
    reached: asyncio.Event = field(default_factory=asyncio.Event)


async def follow_log(stream: asyncio.StreamReader, log_path: Path, target: int, progress: Progress) -> None:
    """Copy the connector's stderr to `log_path`, noting each commit and each unexpected warning."""
    with log_path.open("ab") as log:
        while line := await stream.readline():
            now = time.monotonic()
            log.write(line)
            found = COMMITTED.search(line)
            if found:
                progress.commits += 1
                progress.first_commit = progress.first_commit or now
                progress.last_id, progress.last_commit = int(found.group(1)), now
                if progress.last_id >= target:
                    progress.reached.set()
            elif (b" WARNING " in line or b" ERROR " in line) and EXPECTED_WARNING not in line:
                progress.warnings.append(line.decode(errors="replace").rstrip())


@dataclass
class Memory:
    """VmRSS samples: (seconds since start, kB, last committed ID)."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    #: The most disk the connector's sorts took in tmp_dir at one sample.
    max_spill_bytes: int = 0

    @property
    def max_rss_kb(self) -> int:
        return max((kb for _, kb, _ in self.samples), default=0)

    def write_csv(self, path: Path) -> None:
        lines = ["seconds,rss_kb,last_id", *(f"{t:.2f},{kb},{i}" for t, kb, i in self.samples)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def spill_bytes(spill: Path) -> int:
    total = 0
    for path in spill.glob("*/run-*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


async def sample_rss(pid: int, started: float, progress: Progress, memory: Memory, spill: Path) -> None:
    while rss := proc_status(pid).get("VmRSS", 0):
        memory.samples.append((time.monotonic() - started, rss, progress.last_id))
        memory.max_spill_bytes = max(memory.max_spill_bytes, spill_bytes(spill))
        await asyncio.sleep(SAMPLE_SECONDS)


@dataclass
class Result:
    records: int
    page_size: int
    seconds: float
    first_commit_seconds: float
    commits: int
    peak_rss_mb: float
    max_sampled_rss_mb: float
    peak_spill_mb: float
    cpu_seconds: float
    simulator_cpu_seconds: float
    broker_cpu_seconds: float
    exit_code: int | None
    stop_seconds: float
    requests: int
    rows_served: int
    stored_last_id: int | None = None
    events: int = 0
    dead_letters: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@dataclass
class RunContext:
    records: int
    page_size: int
    bootstrap: str
    sim: Simulator
    env: dict[str, str]
    workdir: Path
    timeout: float
    broker_pid: int
    fmt: str = "json"
    out_of_order: bool = False
    profile_dir: Path | None = None
    #: Where py-spy writes its samples of the connector (raw folded stacks), when sampling.
    py_spy_dir: Path | None = None
    #: Whether the topics exist before the clock starts (made by the connector's own code), as for a
    #: deployment that ran before; otherwise the connector creates them within the measured time.
    topics_exist: bool = False

    def connector_argv(self, config: Path, tag: str) -> list[str]:
        run = ["run", "--config", str(config)]
        if self.profile_dir is None:
            return [str(CLI), *run]
        # cProfile writes its file when the connector exits after SIGTERM; the overhead slows it down.
        output = self.profile_dir / f"{tag}.prof"
        return [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "cdr_stream.cli", *run]


async def run_connector(ctx: RunContext, topics: Topics, chunk_rows: int) -> Result:
    config = ctx.workdir / f"{topics.tag}.toml"
    write_config(config, ctx.sim.url, ctx.bootstrap, topics, chunk_rows, ctx.fmt)
    if ctx.topics_exist:
        await prepare_topics(
            KafkaSettings(bootstrap_servers=ctx.bootstrap),
            TopicSettings(events=topics.events, dead_letter=topics.dead_letter, state=topics.state),
        )
    before = await ctx.sim.stats()
    progress, memory = Progress(), Memory()
    others = (ctx.sim.child.pid, ctx.broker_pid)
    others_cpu = [cpu_seconds(pid) for pid in others]
    started = time.monotonic()
    argv = ctx.connector_argv(config, topics.tag)
    child = await spawn(argv, ctx.env, ctx.workdir / f"{topics.tag}.stdout.log", pipe=True)
    assert child.proc.stderr is not None
    sampler = await start_py_spy(ctx, child.pid, topics.tag)
    log_path = ctx.workdir / f"{topics.tag}.log"
    tasks = [
        asyncio.create_task(follow_log(child.proc.stderr, log_path, ctx.records, progress)),
        asyncio.create_task(sample_rss(child.pid, started, progress, memory, config.parent / "spill")),
    ]
    try:
        await wait_for_target(child, progress, ctx.timeout)
        elapsed = (progress.last_commit or time.monotonic()) - started
        peak_kb = proc_status(child.pid).get("VmHWM", 0)
        cpu = cpu_seconds(child.pid)
        sim_cpu, broker_cpu = (cpu_seconds(pid) - before for pid, before in zip(others, others_cpu, strict=True))
        stopping = time.monotonic()
        exit_code = await stop_connector(child)
        stop_seconds = time.monotonic() - stopping
    finally:
        await child.terminate()
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        memory.write_csv(ctx.workdir / f"{topics.tag}.rss.csv")
    if sampler is not None:  # on a failure it stops by itself with the connector
        await finish_py_spy(ctx, sampler, topics.tag, cpu_seconds=cpu)
    after = await ctx.sim.stats()
    return Result(
        records=ctx.records,
        page_size=ctx.page_size,
        seconds=elapsed,
        first_commit_seconds=(progress.first_commit or started) - started,
        commits=progress.commits,
        peak_rss_mb=peak_kb / 1024,
        max_sampled_rss_mb=memory.max_rss_kb / 1024,
        peak_spill_mb=memory.max_spill_bytes / 1024**2,
        cpu_seconds=cpu,
        simulator_cpu_seconds=sim_cpu,
        broker_cpu_seconds=broker_cpu,
        exit_code=exit_code,
        stop_seconds=stop_seconds,
        requests=after["requests"] - before["requests"],
        rows_served=after["rows_served"] - before["rows_served"],
        problems=[f"connector log: {line}" for line in progress.warnings],
    )


PY_SPY: Final = Path(sys.executable).parent / "py-spy"
PY_SPY_RATE: Final = 100  # samples a second: enough for a split, small enough not to slow the connector much


async def start_py_spy(ctx: RunContext, pid: int, tag: str) -> Child | None:
    """py-spy sampling the connector from now until it exits (Python frames; native code counts to its caller)."""
    if ctx.py_spy_dir is None:
        return None
    if not PY_SPY.exists():
        raise BenchError(f"{PY_SPY} is missing: make bench-venv installs it")
    output = ctx.py_spy_dir / f"{tag}.raw.txt"
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE), "--format", "raw"]
    argv += ["--output", str(output)]
    return await spawn(argv, ctx.env, ctx.workdir / f"{tag}.py-spy.log", pipe=False)


async def finish_py_spy(ctx: RunContext, sampler: Child, tag: str, *, cpu_seconds: float) -> None:
    """Wait for py-spy to write its samples (it stops when the connector exits); note the run's figures beside."""
    assert ctx.py_spy_dir is not None
    try:
        await asyncio.wait_for(sampler.proc.wait(), 60)
    except TimeoutError:
        await sampler.terminate()
        raise BenchError(f"py-spy did not finish; see {ctx.workdir}/{tag}.py-spy.log") from None
    figures = {"records": ctx.records, "page_size": ctx.page_size, "cpu_seconds": cpu_seconds}
    (ctx.py_spy_dir / f"{tag}.json").write_bytes(orjson.dumps(figures))
    print(f"py-spy samples: {ctx.py_spy_dir / tag}.raw.txt (split them with dev/bench/profile_split.py)", flush=True)


async def wait_for_target(child: Child, progress: Progress, timeout: float) -> None:
    exited = asyncio.create_task(child.proc.wait())
    reached = asyncio.create_task(progress.reached.wait())
    try:
        await asyncio.wait([exited, reached], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        reached.cancel()
    if progress.reached.is_set():
        return
    why = f"exited with {child.proc.returncode}" if not child.alive() else f"timed out after {timeout:g} s"
    tail = "\n".join(progress.warnings[-10:])
    raise BenchError(f"the connector {why} at last ID {progress.last_id}\n{tail}")


async def stop_connector(child: Child) -> int | None:
    """SIGTERM; the exit code, or None if it did not exit within STOP_SECONDS."""
    os.kill(child.pid, signal.SIGTERM)
    try:
        return await asyncio.wait_for(child.proc.wait(), STOP_SECONDS)
    except TimeoutError:
        return None


# --- verification --------------------------------------------------------------------------------------


@dataclass
class IdTally:
    """How often each ID 1..N was seen, with what fell outside."""

    seen: bytearray
    records: int = 0
    duplicates: int = 0
    out_of_range: int = 0
    without_id: int = 0
    #: The ID's key in a record: "id" in the connector's events, "ID" in a feed row as it came.
    id_field: str = "id"

    def add(self, value: bytes | None) -> None:
        self.records += 1
        row_id = orjson.loads(value).get(self.id_field) if value else None
        if not isinstance(row_id, int):
            self.without_id += 1
        elif not 0 < row_id < len(self.seen):
            self.out_of_range += 1
        elif self.seen[row_id]:
            self.duplicates += 1
        else:
            self.seen[row_id] = 1

    def missing(self) -> int:
        return len(self.seen) - 1 - sum(self.seen)

    def missing_ranges(self, limit: int = 5) -> list[str]:
        """The first `limit` runs of missing IDs, as "a..b"."""
        ranges: list[str] = []
        start = self.seen.find(0, 1)
        while start != -1 and len(ranges) < limit:
            end = self.seen.find(1, start)
            end = len(self.seen) if end == -1 else end
            ranges.append(f"{start}..{end - 1}")
            start = self.seen.find(0, end)
        return ranges


class Tally(Protocol):
    records: int

    def add(self, value: bytes | None) -> None: ...


async def read_topic(kafka: KafkaSettings, topic: str, tally: Tally) -> int:
    """Read `topic` to its end as a read_committed consumer would; the number of records."""
    before = tally.records
    async for records in committed_records(kafka, [topic]):
        for record in records:
            tally.add(record.value)
    return tally.records - before


async def verify(result: Result, bootstrap: str, topics: Topics) -> None:
    """Check the stored offset and that events + dead letters hold every ID exactly once."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    stored = (await read_offsets(kafka, topics.state)).get(FEED)
    result.stored_last_id = stored.last_id if stored else None
    tally = IdTally(bytearray(result.records + 1))
    started = time.monotonic()
    result.events = await read_topic(kafka, topics.events, tally)
    result.dead_letters = await read_topic(kafka, topics.dead_letter, tally)
    print(
        f"read back in {time.monotonic() - started:.1f} s: {result.events} events + {result.dead_letters} "
        f"dead letters = {tally.records} (expected {result.records}); duplicate IDs {tally.duplicates}, "
        f"missing IDs {tally.missing()}, out of range {tally.out_of_range}, without ID {tally.without_id}; "
        f"stored last_id {result.stored_last_id}",
        flush=True,
    )
    checks = [
        (tally.records == result.records, f"events + dead letters = {tally.records}, not {result.records}"),
        (tally.duplicates == 0, f"{tally.duplicates} IDs appear more than once"),
        # A dead letter without a usable ID stands for one ID that cannot be named.
        (tally.missing() == tally.without_id, f"{tally.missing()} IDs missing: {', '.join(tally.missing_ranges())}"),
        (tally.out_of_range == 0, f"{tally.out_of_range} IDs are outside 1..{result.records}"),
        (result.stored_last_id == result.records, f"stored last_id is {result.stored_last_id}"),
        (result.exit_code == 0, f"connector exit code after SIGTERM: {result.exit_code}"),
    ]
    result.problems += [message for ok, message in checks if not ok]


# --- report --------------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit the connector runs from, marked -dirty when tracked files differ from it."""
    described = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return described.stdout.strip() or "unknown"


def summary(r: Result) -> str:
    return (
        f"caught up in {r.seconds:.2f} s ({r.rate:,.0f} records/s), first commit after "
        f"{r.first_commit_seconds:.2f} s, peak RSS {r.peak_rss_mb:.1f} MB, sorted on disk (peak) "
        f"{r.peak_spill_mb:.0f} MiB; exit code {r.exit_code} "
        f"{r.stop_seconds:.1f} s after SIGTERM; CPU s: connector {r.cpu_seconds:.1f}, simulator "
        f"{r.simulator_cpu_seconds:.1f}, broker {r.broker_cpu_seconds:.1f}; {r.requests} requests, "
        f"{r.rows_served} rows served"
    )


def print_table(results: list[Result], version: str, code: str) -> None:
    header = (
        f"{'rows':>9} {'page':>9} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>11} "
        f"{'max sampled':>11} {'CPU s':>6} {'1st commit s':>12} {'commits':>7} {'requests':>8} "
        f"{'broker':>7}  verdict"
    )
    print(f"\ncode {code}, Kafka {version}, {os.cpu_count()} CPUs\n{header}", flush=True)
    for r in results:
        page = "all" if r.page_size == 0 else str(r.page_size)
        verdict = "OK" if not r.problems else f"{len(r.problems)} problem(s)"
        print(
            f"{r.records:>9} {page:>9} {r.seconds:>8.2f} {r.rate:>10,.0f} {r.peak_rss_mb:>11.1f} "
            f"{r.max_sampled_rss_mb:>11.1f} {r.cpu_seconds:>6.1f} {r.first_commit_seconds:>12.2f} "
            f"{r.commits:>7} {r.requests:>8} {version:>7}  {verdict}",
            flush=True,
        )
    if len(results) > 1:
        rates = [r.rate for r in results]
        print(f"records/s: median {statistics.median(rates):,.0f}, best {max(rates):,.0f}", flush=True)
    for n, r in enumerate(results, 1):
        for problem in r.problems:
            print(f"run {n}: {problem}", flush=True)


# --- main ----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="rows in the backlog (N)")
    parser.add_argument("--page-size", type=int, default=10_000, help="rows per feed answer, 0 = all in one")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="max_rows_per_transaction")
    parser.add_argument(
        "--invalid-rate", type=float, default=0.0, help="share of broken rows (dead letters), default 0"
    )
    parser.add_argument("--format", default="json", choices=["json", "csv", "txt", "pipe"], help="answer format")
    parser.add_argument("--out-of-order", action="store_true", help="every answer shuffled (sorted on disk)")
    parser.add_argument("--repeat", type=int, default=1, help="runs against the same simulator")
    parser.add_argument("--keep-topics", action="store_true", help="leave the benchmark's topics behind")
    parser.add_argument(
        "--topics-exist", action="store_true", help="create the topics before the clock starts, not the connector"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one catch-up may take")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work dir (logs, configs, RSS)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run the connector under cProfile; write DIR/<run>.prof"
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="sample the connector with py-spy; write DIR/<run>.raw.txt"
    )
    return parser.parse_args()


async def run_once(ctx: RunContext, chunk_rows: int, keep_topics: bool) -> Result:
    topics = Topics.fresh()
    order = "shuffled" if ctx.out_of_order else "in ID order"
    print(f"\nrun {topics.tag}: {ctx.records} rows, page size {ctx.page_size or 'all'}, {ctx.fmt}, {order}", flush=True)
    result: Result | None = None
    try:
        result = await run_connector(ctx, topics, chunk_rows)
        print(summary(result), flush=True)
        await verify(result, ctx.bootstrap, topics)
        return result
    finally:
        # Wrong output is evidence: the topics of a run that failed verification stay for inspection.
        if keep_topics or (result is not None and result.problems):
            print(f"kept topics: {', '.join(topics.all())}", flush=True)
        else:
            await delete_topics(ctx.bootstrap, topics.all())


async def bench(args: argparse.Namespace, workdir: Path) -> list[Result]:
    for directory in (args.profile, args.py_spy):
        if directory is not None:
            directory.resolve().mkdir(parents=True, exist_ok=True)
    bootstrap = start_broker()
    env = child_env(secrets.token_urlsafe(18))
    sim = await start_simulator(args, env, workdir)
    ctx = RunContext(
        records=args.records,
        page_size=args.page_size,
        bootstrap=bootstrap,
        sim=sim,
        env=env,
        workdir=workdir,
        timeout=args.timeout,
        broker_pid=broker_pid(),
        fmt=args.format,
        out_of_order=args.out_of_order,
        profile_dir=args.profile and args.profile.resolve(),
        py_spy_dir=args.py_spy and args.py_spy.resolve(),
        topics_exist=args.topics_exist,
    )
    try:
        return [await run_once(ctx, args.chunk_rows, args.keep_topics) for _ in range(args.repeat)]
    finally:
        await sim.child.terminate()


def run_in_workdir(prefix: str, work: Callable[[Path], bool], *, keep: bool = False) -> int:
    """Run `work` in a fresh directory: its exit status, 130 on Ctrl-C or SIGTERM. The directory is removed
    when `work` says all went well (unless `keep`), otherwise named for its logs and configs."""
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the children and delete the topics.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    ok = False
    try:
        ok = work(workdir)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("benchmark interrupted (its children are stopped)", file=sys.stderr)
        return 130
    finally:
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs and configs: {workdir}", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    args = parse_args()

    def work(workdir: Path) -> bool:
        code = code_version()
        results = asyncio.run(bench(args, workdir))
        if code_version() != code:
            code += f" (now {code_version()}: the code changed during the runs)"
        print_table(results, broker_version(broker_pid()), code)
        return all(not r.problems for r in results)

    return run_in_workdir("cdr-bench-", work, keep=args.keep_logs)


if __name__ == "__main__":
    sys.exit(main())
