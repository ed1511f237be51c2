"""The image users deploy, run as the chart's pod runs it, against the real broker and the simulator.

The image is built from the unchanged Dockerfile by dev/container/build in the private engine (on the
local Debian base). The container's settings are not written here: dev/container/pod.py takes them from
`helm template` (user, read-only root, dropped capabilities, no privilege escalation, the default seccomp
profile, the ConfigMap and Secret files at their mount paths, the emptyDir, the grace period). The engine
failing to start, or the build failing, fails these tests; they never skip.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import FEED, PASSWORD, logged_offset

pytestmark = [pytest.mark.kafka, pytest.mark.tools, pytest.mark.container, pytest.mark.usefixtures("cleanup_topics")]

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "dev" / "container" / "engine"
BUILD = ROOT / "dev" / "container" / "build"
USER = 10001
# What the runtime image must not hold: a compiler or build tool, a pip cache, the build stage's wheels,
# source tree or build virtualenv. (The base's own ensurepip wheels are not a cache.)
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "x86_64-linux-gnu-gcc-12")
LEFTOVERS = "find / -xdev \\( -path '*/.cache/pip' -o -path /wheels -o -path /src -o -path /opt/build \\) -print"


def _load_pod() -> ModuleType:
    spec = importlib.util.spec_from_file_location("container_pod", ROOT / "dev" / "container" / "pod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


pod = _load_pod()


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pod.DOCKER, *args], env=pod.docker_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


async def adocker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """docker in a thread: the simulator serves from this event loop meanwhile."""
    return await asyncio.to_thread(docker, *args, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image, built (cached layers make a rebuild quick) in the private engine, stopped at the end."""
    started = time.monotonic()
    build = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1800, check=False)
    if build.returncode != 0:
        pytest.fail(f"dev/container/build failed:\n{build.stdout}\n{build.stderr[-4000:]}", pytrace=False)
    print(f"image built in {time.monotonic() - started:.0f} s")
    yield build.stdout.strip().splitlines()[-1]
    subprocess.run([str(ENGINE), "stop"], capture_output=True, timeout=120, check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _values(sim: FeedSimulator, kafka: KafkaSettings, topics: TopicSettings, http_port: int) -> dict[str, Any]:
    """Chart values for this test's feed, broker and topics; the HTTP port through the chart's extraEnv."""
    return {
        "feeds": [
            {
                "name": FEED,
                "url": sim.url,
                "login": sim.config.login,
                "format": "json",
                "pollIntervalSeconds": 0.2,
                "options": {"max_rows_per_transaction": 500, "backoff_initial_seconds": 0.1},
            }
        ],
        "credentials": {"create": True, "data": {f"{FEED}-password": PASSWORD}},
        "kafka": {
            "bootstrapServers": kafka.bootstrap_servers,
            "transactionalIdPrefix": topics.events.split(".")[0],
        },
        "topics": {
            "events": topics.events,
            "deadLetter": topics.dead_letter,
            "state": topics.state,
            "eventsPartitions": 3,
        },
        "extraEnv": [{"name": "CDR_STREAM_HTTP_PORT", "value": str(http_port)}],
    }


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (a loopback http URL of the test)
        return answer.status, answer.read().decode()


def _unexpected_writes(diff: str, mounts: list[PurePosixPath]) -> list[str]:
    """`docker diff` lines other than the mount points (and the directories leading to them) the engine made."""
    # /var/run is a symbolic link to /run in Debian: the engine makes the mount point under /run.
    targets = {PurePosixPath(str(m).replace("/var/run/", "/run/", 1)) for m in mounts} | set(mounts)
    allowed = {path for target in targets for path in (target, *target.parents)}
    return [line for line in diff.splitlines() if PurePosixPath(line.split(maxsplit=1)[1]) not in allowed]


def test_image_runs_as_non_root_and_holds_no_compiler_nor_pip_cache(image: str) -> None:
    inspect = docker("image", "inspect", image)
    assert inspect.returncode == 0, inspect.stderr
    (config,) = json.loads(inspect.stdout)
    assert config["Config"]["User"] == f"{USER}:{USER}"
    print(f"{image}: {config['Size'] / 1e6:.0f} MB")
    whoami = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u")
    assert (whoami.returncode, whoami.stdout.strip()) == (0, str(USER)), whoami.stderr
    # The scan runs as root: a pip cache under /root would be unreadable to the image's user.
    probe = f"for tool in {' '.join(COMPILERS)}; do command -v $tool; done; ls /usr/lib/gcc; {LEFTOVERS}"
    found = docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "/bin/sh", image, "-c", probe)
    assert found.stdout.split() == [], f"the image holds build leftovers:\n{found.stdout}"
    assert "find:" not in found.stderr, found.stderr


def test_image_normalizes_rows_with_the_c_fast_path(image: str) -> None:
    # The build stage compiled the extension into the wheel; the runtime stage has no compiler to make it.
    probe = "from cdr_stream.records import fastpath; print(fastpath.native.__file__)"
    found = docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", probe)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip().endswith(".so"), found.stdout


async def test_the_chart_pod_streams_exactly_once_answers_probes_and_stops_within_the_grace_period(
    image: str, kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    http_port = _free_port()
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=3000, page_size=1000)) as sim:
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(_values(sim, kafka, topics, http_port)), encoding="utf-8")
        run = pod.pod_run(pod.render(values), tmp_path / "files")
        assert run.image == image, "the chart deploys the image that dev/container/build tags"
        run.materialize()
        name = f"cdr-stream-test-{uuid.uuid4().hex[:8]}"
        started = await adocker(*run.docker_args(name, detach=True))
        assert started.returncode == 0, started.stderr
        try:
            logs = ""
            deadline = time.monotonic() + 120
            while (offset := logged_offset(logs)) is None or offset < sim.max_id:
                state = (await adocker("inspect", "--format", "{{.State.Status}}", name)).stdout.strip()
                assert state == "running", f"the container is {state}:\n{logs[-3000:]}"
                assert time.monotonic() < deadline, f"offset {offset} did not reach {sim.max_id}:\n{logs[-3000:]}"
                await asyncio.sleep(0.5)
                logs = (await adocker("logs", name)).stderr

            # The settings are in force in the running process, not only asked for.
            proc = (await adocker("exec", name, "cat", "/proc/1/status")).stdout
            fields = dict(line.split(":", 1) for line in proc.splitlines() if ":" in line)
            assert fields["Uid"].split()[:2] == [str(USER), str(USER)], proc
            assert fields["CapEff"].strip() == "0000000000000000", proc
            assert fields["NoNewPrivs"].strip() == "1", proc
            assert fields["Seccomp"].strip() == "2", "the runtime's default seccomp filter"

            base = f"http://127.0.0.1:{http_port}"
            for path in ("/healthz", "/readyz"):
                assert (await asyncio.to_thread(_get, base + path))[0] == 200, path
            status, metrics = await asyncio.to_thread(_get, base + "/metrics")
            assert status == 200
            assert f'cdr_stream_records_published_total{{feed="{FEED}"}} {float(sim.max_id)}' in metrics

            diff = await adocker("diff", name)
            assert diff.returncode == 0, diff.stderr
            assert _unexpected_writes(diff.stdout, run.mount_paths) == [], diff.stdout
            print(f"docker diff (mount points only): {diff.stdout.splitlines()}")

            stopping = time.monotonic()
            stopped = await adocker("stop", "--time", str(run.grace_seconds), name, timeout=run.grace_seconds + 30)
            took = time.monotonic() - stopping
            assert stopped.returncode == 0, stopped.stderr
            exit_code = (await adocker("inspect", "--format", "{{.State.ExitCode}}", name)).stdout.strip()
            logs = (await adocker("logs", name)).stderr
            assert exit_code == "0", logs[-3000:]
            assert took < run.grace_seconds, f"docker stop took {took:.1f} s"
            assert "connector stopped" in logs
            print(f"docker stop: exit 0 after {took:.1f} s (grace period {run.grace_seconds} s)")
        finally:
            await adocker("rm", "--force", name)

        verify_args = ["verify", "--feed", FEED, "--expect-range", f"{sim.config.first_id}-{sim.max_id}"]
        verify = await adocker(*run.docker_args(f"{name}-verify", args=verify_args))
        assert verify.returncode == 0, verify.stdout + verify.stderr
