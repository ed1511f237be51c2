"""Cost of idle feeds: what one `cdr-stream run` with N feeds holds and spends once every feed is idle.

    .venv/bin/python dev/bench/feeds.py --feeds 100 [--window 60] [--records 100] [--poll-seconds 30]

One simulator serves `--records` rows; N feeds with the same login read it, each into the same topics
under its own name (so each has its own producer, transactional ID, presence and offset). When the
connector's /status shows every feed `idle` (caught up, waiting for its next poll), the script waits
`--settle` seconds, then measures the connector over `--window` seconds: CPU as a percentage of one
core (the window spans the feeds' polls at the poll interval), RSS at the end and its peak (VmHWM),
open file descriptors, threads, and the broker's CPU over the same window. See dev/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import catchup
from catchup import BenchError, Topics

from cdr_stream.config import KafkaSettings
from cdr_stream.kafka.presence import running_members

IDLE: Final = "idle"
STATUS_SECONDS: Final = 2.0


@dataclass
class IdleCost:
    feeds: int
    seconds_to_idle: float
    rss_mb: float
    peak_rss_mb: float
    cpu_percent: float
    broker_cpu_percent: float
    descriptors: Counter[str]
    threads: int
    states_after: Counter[str]
    #: Feeds whose presence group shows exactly one live member (this process's) at the end.
    present: int
    load_before: float
    load_after: float


async def feed_states(url: str) -> Counter[str]:
    """How many feeds are in each state, from the connector's /status; empty while it does not answer."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            status: dict[str, Any] = await response.json()
    except (aiohttp.ClientError, OSError):
        return Counter()
    return Counter(str(feed.get("state")) for feed in status.get("feeds", {}).values())


async def wait_all_idle(child: catchup.Child, url: str, feeds: int, timeout: float) -> float:
    started = time.monotonic()
    states: Counter[str] = Counter()
    while time.monotonic() - started < timeout:
        if not child.alive():
            raise BenchError(f"the connector exited with {child.proc.returncode}")
        states = await feed_states(url)
        if states[IDLE] == feeds:
            return time.monotonic() - started
        await asyncio.sleep(STATUS_SECONDS)
    raise BenchError(f"not every feed was idle after {timeout:g} s: {dict(states)}")


def descriptors(pid: int, broker_port: int, feed_port: int) -> Counter[str]:
    """The process's open descriptors by what they are: TCP connections to the broker or to the feed,
    listening sockets, other sockets, and everything else (files, pipes, the event loop's epoll)."""
    inodes: dict[str, str] = {}
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes[target[len("socket:[") : -1]] = "other socket"
        else:
            kinds["other"] += 1
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            inode, remote_port, state = fields[9], int(fields[2].rsplit(":", 1)[1], 16), fields[3]
            if inode in inodes:
                ports = {broker_port: "broker connection", feed_port: "feed connection"}
                inodes[inode] = "listening socket" if state == "0A" else ports.get(remote_port, "other socket")
    kinds.update(inodes.values())
    return kinds


async def present_feeds(bootstrap: str, topics: Topics, names: list[str]) -> int:
    """How many of the feeds keep their member in their presence group (the zombie protection a cheaper
    idle feed must not lose)."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, transactional_id_prefix=topics.tag)
    return sum([len(await running_members(kafka, name)) == 1 for name in names])


def thread_count(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Threads:")[1].split()[0])


async def measure(args: argparse.Namespace, workdir: Path) -> IdleCost:
    bootstrap = catchup.start_broker()
    broker = catchup.broker_pid()
    env = catchup.child_env(secrets.token_urlsafe(18))
    sim_args = argparse.Namespace(records=args.records, page_size=10_000, invalid_rate=0.0, out_of_order=False)
    sim = await catchup.start_simulator(sim_args, env, workdir)
    topics = Topics.fresh()
    port = catchup.free_port()
    config = workdir / "feeds.toml"
    names = [f"feed-{n:04d}" for n in range(args.feeds)]
    catchup.write_config(
        config, sim.url, bootstrap, topics, 10_000, "json", feeds=names, poll_seconds=args.poll_seconds, http_port=port
    )
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    argv = [str(catchup.CLI), "run", "--config", str(config)]
    child = await catchup.spawn(argv, env, workdir / "run.log", pipe=False)
    try:
        url = f"http://127.0.0.1:{port}/status"
        await wait_all_idle(child, url, args.feeds, args.timeout)
        to_idle = time.monotonic() - started
        print(f"{args.feeds} feeds idle after {to_idle:.1f} s; settling {args.settle:g} s", flush=True)
        await asyncio.sleep(args.settle)
        cpu_before, broker_before = catchup.cpu_seconds(child.pid), catchup.cpu_seconds(broker)
        window_start = time.monotonic()
        await asyncio.sleep(args.window)
        window = time.monotonic() - window_start
        cpu = catchup.cpu_seconds(child.pid) - cpu_before
        broker_cpu = catchup.cpu_seconds(broker) - broker_before
        status = catchup.proc_status(child.pid)
        return IdleCost(
            feeds=args.feeds,
            seconds_to_idle=to_idle,
            rss_mb=status.get("VmRSS", 0) / 1024,
            peak_rss_mb=status.get("VmHWM", 0) / 1024,
            cpu_percent=100 * cpu / window,
            broker_cpu_percent=100 * broker_cpu / window,
            descriptors=descriptors(child.pid, int(bootstrap.rsplit(":", 1)[1]), urlsplit(sim.url).port or 80),
            threads=thread_count(child.pid),
            states_after=await feed_states(url),
            present=await present_feeds(bootstrap, topics, names),
            load_before=load_before,
            load_after=os.getloadavg()[0],
        )
    finally:
        await child.terminate(grace=30)
        await sim.child.terminate()
        await catchup.delete_topics(bootstrap, topics.all())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=100, help="feeds in the one connector process (N)")
    parser.add_argument("--records", type=int, default=100, help="rows the simulator serves each feed first")
    parser.add_argument("--poll-seconds", type=float, default=30, help="poll_interval_seconds of every feed")
    parser.add_argument("--settle", type=float, default=10, help="seconds to wait once all are idle")
    parser.add_argument("--window", type=float, default=60, help="seconds over which the idle CPU is measured")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the feeds may take to become idle")
    return parser.parse_args()


def main() -> int:
    args = parse_args()

    def work(workdir: Path) -> bool:
        code = catchup.code_version()
        cost = asyncio.run(measure(args, workdir))
        kinds = ", ".join(f"{kind} {n}" for kind, n in cost.descriptors.most_common())
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        print(
            f"\ncode {code}, {os.cpu_count()} CPUs; {cost.feeds} feeds, poll interval {args.poll_seconds:g} s, "
            f"idle window {args.window:g} s; uptime: {uptime}\n"
            f"RSS {cost.rss_mb:.1f} MB ({cost.rss_mb / cost.feeds:.2f} MB a feed), peak {cost.peak_rss_mb:.1f} MB\n"
            f"idle CPU {cost.cpu_percent:.1f} % of a core (broker {cost.broker_cpu_percent:.1f} %)\n"
            f"open file descriptors {cost.descriptors.total()} ({kinds}), threads {cost.threads}\n"
            f"all idle after {cost.seconds_to_idle:.1f} s; load average {cost.load_before:.2f} before, "
            f"{cost.load_after:.2f} after; feed states at the end: {dict(cost.states_after)}; "
            f"in their presence group: {cost.present} of {cost.feeds}",
            flush=True,
        )
        if cost.present != cost.feeds:
            print("benchmark failed: a feed lost its presence member", file=sys.stderr)
            return False
        return True

    return catchup.run_in_workdir("cdr-feeds-", work)


if __name__ == "__main__":
    sys.exit(main())
