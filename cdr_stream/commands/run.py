"""`cdr-stream run`: stream every configured feed into Kafka until SIGTERM, with the HTTP endpoints."""

from __future__ import annotations

import argparse
import asyncio
import signal

from cdr_stream.answers.order import TempSpace
from cdr_stream.commands.common import Commands, Exit, add_config, log
from cdr_stream.config import Settings
from cdr_stream.connector import Connector
from cdr_stream.errors import ConnectorError, EndpointError
from cdr_stream.ops.endpoints import Endpoints
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.metrics import ConnectorMetrics
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.ops.runtime import tune_garbage_collector
from cdr_stream.pipeline.observer import ObserverGroup


def add_to(commands: Commands) -> None:
    run = commands.add_parser("run", help="stream every configured feed into Kafka until SIGTERM")
    add_config(run)
    run.set_defaults(handler=handle)


def handle(settings: Settings, args: argparse.Namespace) -> int:
    tune_garbage_collector()
    return asyncio.run(run_connector(settings))


async def run_connector(settings: Settings) -> int:
    health = FeedHealth(settings)
    space = TempSpace(settings.tmp_dir, settings.tmp_max_bytes)
    metrics = ConnectorMetrics([feed.name for feed in settings.feeds], health, space=space)
    endpoints = Endpoints(metrics, health, settings.http_host, settings.http_port)
    connector = Connector(settings, observer=ObserverGroup(ProgressLog(), metrics, health), space=space)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, connector.request_stop)
    try:
        await endpoints.start()
    except EndpointError as exc:
        log.error("%s", exc)
        return Exit.FAILED
    try:
        await connector.start()
        await connector.wait()
    except ConnectorError as exc:
        for feed, cause in exc.causes.items():
            log.error(
                "feed %s failed (%s): %s", feed, cause.reason, cause, extra={"feed": feed, "reason": cause.reason}
            )
        why = (
            "a feed failed and exit_when_any_feed_fails is set"
            if settings.exit_when_any_feed_fails
            else "every feed failed"
        )
        log.error("stopping: %s", why)
        return Exit.FENCED if exc.fenced else Exit.FAILED
    except Exception as exc:
        log.error("stopping: %s", exc)
        return Exit.FAILED
    finally:
        await connector.stop()
        await endpoints.stop()
    return Exit.OK
