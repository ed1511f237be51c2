"""The HTTP endpoints for Prometheus, Kubernetes and people: /metrics, /healthz (liveness), /readyz
(readiness), /status (each feed's state as JSON; what `cdr-stream status` prints).

They run on the connector's own event loop, so an answer from /healthz also proves the loop is not blocked.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from cdr_stream.errors import EndpointError
from cdr_stream.ops.health import FeedHealth, Verdict
from cdr_stream.ops.metrics import CONTENT_TYPE, ConnectorMetrics
from cdr_stream.ops.service import Service

log = logging.getLogger(__name__)


class Endpoints(Service):
    def __init__(self, metrics: ConnectorMetrics, health: FeedHealth, host: str, port: int) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._started = False

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise EndpointError(f"cannot serve /metrics on {self.host}:{self.port} (http_port): {exc}") from None
        self._started = True
        sockets = self._runner.addresses
        if sockets:
            self.port = sockets[0][1]  # the real port when 0 asked for any
        log.info("serving /metrics, /healthz, /readyz and /status on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _verdict(self.health.liveness())

    async def _readyz(self, request: web.Request) -> web.Response:
        return _verdict(self.health.readiness())

    async def _status(self, request: web.Request) -> web.Response:
        # Always 200: the body is the answer; the probes are /healthz and /readyz.
        return web.Response(body=orjson.dumps(self.health.status()), content_type="application/json")


def _verdict(verdict: Verdict) -> web.Response:
    body = orjson.dumps({"status": "ok" if verdict.ok else "failing", "feeds": verdict.detail})
    return web.Response(body=body, status=200 if verdict.ok else 503, content_type="application/json")
