"""Toxiproxy (built by dev/toxiproxy/install) on loopback, and its HTTP API: proxies and the faults
("toxics") they put on the traffic through them.

Every listener and upstream is a 127.0.0.1 address; the server is stopped (and with it every proxy)
when the tests or the soak end.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "dev" / "toxiproxy" / "install"
HOST = "127.0.0.1"

#: Toxics act on one direction of a proxied connection.
DOWNSTREAM = "downstream"  # from the server (broker, feed) to the client
UPSTREAM = "upstream"  # from the client to the server
BOTH = (DOWNSTREAM, UPSTREAM)


_REMOVE_ATTEMPTS = 3


class ToxiproxyError(Exception):
    """Toxiproxy could not be built, started or driven."""


@dataclass
class Toxiproxy:
    """A toxiproxy-server process and its API."""

    process: subprocess.Popen[bytes]
    api: str
    log: Path

    @classmethod
    def start(cls, port: int, log: Path) -> Toxiproxy:
        """Build the server if needed, start it on `port` and wait until its API answers."""
        built = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=600, check=False)
        if built.returncode != 0:
            raise ToxiproxyError(f"dev/toxiproxy/install failed:\n{built.stdout}\n{built.stderr}")
        binary = built.stdout.strip().splitlines()[-1]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [binary, "-host", HOST, "-port", str(port)], stdout=out, stderr=subprocess.STDOUT
            )
        proxy = cls(process, f"http://{HOST}:{port}", log)
        deadline = time.monotonic() + 20
        while not proxy._answers():
            if process.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                raise ToxiproxyError(f"toxiproxy-server did not start on port {port}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        return proxy

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.api}/version", timeout=1):  # noqa: S310 - our own loopback API
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float = 10) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"{self.api}{path}", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as answer,
        ):
            text = await answer.text()
            if answer.status >= 300:
                raise ToxiproxyError(f"{method} {path}: HTTP {answer.status} {text}")
            return await answer.json(content_type=None) if text else None

    async def create(self, name: str, listen_port: int, upstream_port: int) -> Proxy:
        """A proxy from HOST:listen_port (0: any free port) to HOST:upstream_port; replaces one of that name."""
        with contextlib.suppress(ToxiproxyError):
            await self._call("DELETE", f"/proxies/{name}")
        made = await self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": f"{HOST}:{listen_port}", "upstream": f"{HOST}:{upstream_port}", "enabled": True},
        )
        return Proxy(self, name, int(str(made["listen"]).rsplit(":", 1)[1]))

    async def delete(self, proxy: Proxy) -> None:
        await self._call("DELETE", f"/proxies/{proxy.name}")

    async def in_front_of(self, name: str, url: str) -> tuple[Proxy, str]:
        """A proxy in front of the loopback server of `url`, and `url` pointing at the proxy instead."""
        parts = urlsplit(url)
        assert parts.hostname == HOST and parts.port is not None, url
        proxy = await self.create(name, 0, parts.port)
        return proxy, urlunsplit(parts._replace(netloc=proxy.address))


@dataclass(frozen=True)
class Proxy:
    server: Toxiproxy
    name: str
    port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def add(self, kind: str, stream: str, toxicity: float = 1.0, **attributes: float) -> str:
        """Add a toxic (latency, bandwidth, timeout...) on one direction; its name, for `remove`."""
        name = f"{kind}-{stream}-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        await self.server._call("POST", f"/proxies/{self.name}/toxics", body)
        return name

    async def remove(self, toxic: str) -> None:
        # Toxiproxy can take long to take a toxic out of a link busy with delayed data (it waits for the
        # link, and answers 503 after 25 s): asked again until it is gone, for up to about two minutes.
        for attempt in range(1, _REMOVE_ATTEMPTS + 1):
            try:
                await self.server._call("DELETE", f"/proxies/{self.name}/toxics/{toxic}", timeout=40)
                return
            except ToxiproxyError as exc:
                if "HTTP 404" in str(exc):
                    return  # gone already
                if "HTTP 503" not in str(exc) or attempt == _REMOVE_ATTEMPTS:
                    raise
            except TimeoutError:
                if attempt == _REMOVE_ATTEMPTS:
                    raise

    async def clear(self) -> None:
        """Remove every toxic of this proxy."""
        for toxic in await self.server._call("GET", f"/proxies/{self.name}/toxics") or []:
            await self.remove(str(toxic["name"]))


@dataclass(frozen=True)
class Fault:
    """A kind of network fault: Toxiproxy toxics, each on one direction."""

    name: str
    toxics: tuple[tuple[str, str, float, dict[str, float]], ...]  # (type, stream, toxicity, attributes)


def fault(name: str, kind: str, streams: tuple[str, ...] = BOTH, toxicity: float = 1.0, **attributes: float) -> Fault:
    return Fault(name, tuple((kind, stream, toxicity, attributes) for stream in streams))


#: Latency of 200 ms to 2 s: 1.1 s +/- 0.9 s on each direction.
LATENCY = fault("latency 200 ms-2 s", "latency", latency=1100, jitter=900)
#: A blackhole: nothing passes and nothing is reset (Toxiproxy's timeout toxic with timeout 0).
BLACKHOLE = fault("blackhole", "timeout", timeout=0)
#: A trickle: 2 KB/s each way.
TRICKLE = fault("bandwidth 2 KB/s", "bandwidth", rate=2)


def connection_loss(share: float) -> Fault:
    """`share` of the connections blackholed. Toxiproxy works on connections, not packets, so this is the
    nearest it comes to packet loss: a connection that loses its packets for good."""
    return fault(f"{share:.0%} of connections lost", "timeout", toxicity=share, timeout=0)


@contextlib.asynccontextmanager
async def injected(proxies: list[Proxy], what: Fault) -> AsyncIterator[None]:
    """`what` on every proxy of `proxies` for the block; removed afterwards, whatever happens."""
    added: list[tuple[Proxy, str]] = []
    try:
        for proxy in proxies:
            for kind, stream, toxicity, attributes in what.toxics:
                added.append((proxy, await proxy.add(kind, stream, toxicity, **attributes)))
        yield
    finally:
        for proxy, toxic in added:
            with contextlib.suppress(ToxiproxyError):
                await proxy.remove(toxic)


async def sleep_with(proxies: list[Proxy], what: Fault, seconds: float) -> None:
    """`what` for `seconds`, then gone."""
    async with injected(proxies, what):
        await asyncio.sleep(seconds)
