"""`make demo`: the broker, a live simulated billing feed and the connector, showing progress until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cdr_stream.config import load_settings
from cdr_stream.kafka.clients import admin_client

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "dev" / "demo.toml"
SIMULATOR_PORT = 18080
CLI = [sys.executable, "-m", "cdr_stream.cli"]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


async def reset_topics() -> None:
    """A demo starts from nothing: its simulator starts from ID 1 again."""
    settings = load_settings(CONFIG)
    admin = admin_client(settings.kafka)
    await admin.start()
    try:
        names = {settings.topics.events, settings.topics.dead_letter, settings.topics.state}
        doomed = sorted(names & set(await admin.list_topics()))
        if doomed:
            await admin.delete_topics(doomed)
            await asyncio.sleep(2)  # deletion is asynchronous on the broker
    finally:
        await admin.close()


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the simulator did not listen on port {port} within {timeout:g} s")


def main() -> int:
    # The simulator's password must match the one in dev/demo.toml.
    env = dict(os.environ, CDR_SIM_PASSWORD=load_settings(CONFIG).feeds[0].secret)
    say("starting the Kafka broker (dev/kafka/broker start)")
    subprocess.run([str(ROOT / "dev" / "kafka" / "broker"), "start"], check=True)
    asyncio.run(reset_topics())

    say(f"starting the simulated billing feed on port {SIMULATOR_PORT}: 5,000 CDRs, then 20 new ones a second")
    simulator_log = (ROOT / ".cache" / "demo-simulator.log").open("w")
    simulator = subprocess.Popen(
        [
            *CLI,
            "simulate",
            "--port",
            str(SIMULATOR_PORT),
            "--records",
            "5000",
            "--rate",
            "20",
            "--page-size",
            "1000",
            "--invalid-rate",
            "0.01",
        ],
        env=env,
        stdout=simulator_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C is for the connector; the simulator is stopped after it
    )
    try:
        wait_for_port(SIMULATOR_PORT)
        say("starting the connector (cdr-stream run --config dev/demo.toml); Ctrl-C stops it cleanly")
        say("connector: metrics on http://127.0.0.1:18081/metrics, probes on /healthz and /readyz")
        connector = subprocess.Popen([*CLI, "run", "--config", str(CONFIG)], env=env)
        try:
            code = connector.wait()
        except KeyboardInterrupt:  # the connector got the same SIGINT and drains its page in flight
            code = connector.wait()
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(10)
    say(f"the connector exited with code {code}. To look at what it published:")
    print(
        "  dev/kafka/broker consume demo.cdr.events            # the CDR events (read_committed)\n"
        "  dev/kafka/broker consume demo.cdr.events.dlq        # rows that failed validation, with the reason\n"
        "  .venv/bin/cdr-stream state show --config dev/demo.toml   # the stored offset\n"
        "  dev/kafka/broker stop                               # when you are done"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
