"""The `cdr-stream` command: run, status, backfill, verify, simulate, state show, state set, dlq show,
dlq replay. Thin: it parses and delegates."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from aiokafka.errors import KafkaError

from cdr_stream import __version__
from cdr_stream.answers.order import TempSpace
from cdr_stream.config import FeedSettings, Settings, TopicSettings, load_settings
from cdr_stream.connector import Connector
from cdr_stream.errors import (
    BackfillError,
    ConfigError,
    ConnectorError,
    DlqReplayError,
    EndpointError,
    ExpectationError,
    StateReadError,
    StatusError,
    TopicMissingError,
    TopicSetupError,
    WriteError,
)
from cdr_stream.kafka.presence import SESSION_TIMEOUT_MS, presence_group, running_members
from cdr_stream.kafka.state import read_offsets
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.ops.checker import Expectation, check_feed, parse_range, read_id_file
from cdr_stream.ops.endpoints import Endpoints
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.logs import configure_logging, describe_error
from cdr_stream.ops.metrics import ConnectorMetrics, ReplayMetrics
from cdr_stream.ops.progress import BackfillReport, ProgressLog
from cdr_stream.ops.status import fetch_status, status_table, status_url
from cdr_stream.pipeline.backfill import Backfill, BackfillWindow, parse_day, parse_hour, replay_topics
from cdr_stream.pipeline.dlq import DlqReplay, ReplayLog, ReplayObservers, ReplaySelection, summarize_dead_letters
from cdr_stream.pipeline.observer import ObserverGroup
from cdr_stream.records.processor import ProcessedChunk

log = logging.getLogger("cdr_stream")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("CDR_STREAM_CONFIG"),
        required="CDR_STREAM_CONFIG" not in os.environ,
        help="the TOML configuration file (default: $CDR_STREAM_CONFIG)",
    )


T = TypeVar("T")


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message for people."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    from cdr_stream.simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(prog="cdr-stream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cdr-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="stream every configured feed into Kafka until SIGTERM")
    _add_config(run)

    status = commands.add_parser(
        "status",
        help="print a running connector's feeds: state, last committed ID, failures, next attempt",
        description="Read the /status endpoint of a running connector (its http_port) and print one line per "
        "feed. Exit 0 when every feed works, 1 when a feed has failed or the connector cannot be read.",
    )
    status.add_argument(
        "--url", required=True, help="the connector's HTTP address, e.g. http://127.0.0.1:8080 (its http_port)"
    )

    backfill = commands.add_parser(
        "backfill",
        help="publish a past window of one feed again, hour by hour, marked as replayed",
        description="Ask the feed for the rows of a past window (its date/hour parameters, one hour at a "
        "time) and publish them again with a cdr-replay header, exactly once per run. The feed's own offset "
        "is not touched. Run the same command again to resume after a crash or a stop.",
    )
    _add_config(backfill)
    backfill.add_argument("--feed", required=True, help="the feed name, as configured")
    backfill.add_argument(
        "--date", required=True, type=_argument(parse_day), help="the provider-local day to replay, YYYY-MM-DD"
    )
    backfill.add_argument("--hour", type=_argument(parse_hour), help="only this hour (0 to 23) of --date")
    backfill.add_argument(
        "--to-date", type=_argument(parse_day), help="replay every day from --date to this one (inclusive)"
    )
    backfill.add_argument("--topic", help="publish the events to this topic instead of the events topic")
    backfill.add_argument(
        "--restart", action="store_true", help="start the window over as a new run even if an earlier run finished"
    )

    simulate = commands.add_parser("simulate", help="serve a simulated billing feed (development, tests, demo)")
    simulator_cli.add_arguments(simulate)

    state = commands.add_parser("state", help="read or set the stored offsets")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    show = state_commands.add_parser("show", help="print each feed's stored offset (last committed ID)")
    _add_config(show)
    set_ = state_commands.add_parser("set", help="store a new offset for a feed (rewind or skip)")
    _add_config(set_)
    set_.add_argument("--feed", required=True, help="the feed name, as configured")
    set_.add_argument("--last-id", type=int, required=True, help="the ID to resume after")

    verify = commands.add_parser(
        "verify",
        help="check a feed's committed output: every ID once, per-account order, the stored offset "
        "(exit 0 clean, 1 problems found)",
    )
    _add_config(verify)
    verify.add_argument("--feed", required=True, help="the feed name, as configured")
    expect = verify.add_mutually_exclusive_group()
    expect.add_argument("--expect-ids", type=Path, metavar="FILE", help="a file of the expected IDs, one per line")
    expect.add_argument("--expect-range", metavar="A-B", help="the expected IDs, A to B (both included)")

    dlq = commands.add_parser("dlq", help="look at a feed's dead letters, or replay them with today's rules")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_show = dlq_commands.add_parser(
        "show", help="count a feed's dead letters by rule and field, with the oldest, the newest and samples"
    )
    _add_config(dlq_show)
    dlq_show.add_argument("--feed", required=True, help="the feed name, as configured")
    replay = dlq_commands.add_parser(
        "replay",
        help="publish the dead letters today's rules accept, each ID once, marked as replayed",
        description="Read the feed's dead letters and put each row through today's rules. A row that passes "
        "is published to the events topic with a cdr-replay header, unless the events topic already holds its "
        "ID; a row that still fails stays in the dead-letter topic. Exactly once, a transaction per chunk: "
        "run the same command again to resume after a crash or a stop. Safe while the feed's connector runs.",
    )
    _add_config(replay)
    replay.add_argument("--feed", required=True, help="the feed name, as configured")
    replay.add_argument("--rule", help="only the dead letters of this rule (as dlq show names it)")
    replay.add_argument("--from-id", type=_argument(_positive), help="only dead letters with an ID from this one")
    replay.add_argument("--to-id", type=_argument(_positive), help="only dead letters with an ID up to this one")
    replay.add_argument(
        "--chunk-size",
        type=_argument(_positive),
        help="dead letters per transaction (default: the feed's max_rows_per_transaction)",
    )
    replay.add_argument(
        "--metrics-file", type=Path, metavar="FILE", help="write the run's metrics here (Prometheus text format)"
    )
    return parser


def _positive(text: str) -> int:
    """A whole number of at least 1."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        from cdr_stream.simulator import cli as simulator_cli

        configure_logging("INFO")
        return simulator_cli.run(args)
    if args.command == "status":
        return asyncio.run(print_status(args.url))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    for warning in settings.warnings():
        log.warning(warning)
    if args.command == "run":
        return asyncio.run(run_connector(settings))
    if args.command == "backfill":
        return run_backfill(settings, args)
    if args.command == "verify":
        return asyncio.run(verify_feed(settings, args.feed, args.expect_ids, args.expect_range))
    if args.command == "dlq":
        return run_dlq(settings, args)
    if args.state_command == "show":
        return asyncio.run(show_state(settings))
    return asyncio.run(set_state(settings, args.feed, args.last_id))


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
        return EXIT_FAILED
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
        return EXIT_FENCED if exc.fenced else EXIT_FAILED
    except Exception as exc:
        log.error("stopping: %s", exc)
        return EXIT_FAILED
    finally:
        await connector.stop()
        await endpoints.stop()
    return EXIT_OK


async def print_status(url: str) -> int:
    try:
        status = await fetch_status(status_url(url))
    except StatusError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(status_table(status))
    return EXIT_OK if status.get("status") == "ok" else EXIT_FAILED


def run_backfill(settings: Settings, args: argparse.Namespace) -> int:
    try:
        feed = settings.feed(args.feed)
        window = BackfillWindow(args.date, args.to_date or args.date, args.hour)
        warning = window.check_against(datetime.now(UTC))
        topics = replay_topics(settings.topics, args.topic)
    except (ConfigError, ValueError) as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if warning:
        log.warning("%s", warning)
    report = BackfillReport(sys.stderr if sys.stderr.isatty() else None)
    return asyncio.run(_backfill(settings, feed, window, report, topics, args.restart))


def _cancel_on_signals() -> None:
    """SIGTERM or SIGINT cancels the running task: what was committed stays committed, with its progress;
    a commit cut short is aborted."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)


async def _backfill(
    settings: Settings,
    feed: FeedSettings,
    window: BackfillWindow,
    report: BackfillReport,
    topics: TopicSettings,
    restart: bool,
) -> int:
    _cancel_on_signals()
    try:
        await Backfill(settings, feed, window, report, topics=topics, restart=restart).run()
    except asyncio.CancelledError:
        log.error("backfill stopped before its end; run the same command again to resume")
        return EXIT_FAILED
    except BackfillError as exc:
        log.error("backfill stopped: %s", exc)
        return EXIT_FAILED
    except (TopicSetupError, KafkaError, OSError) as exc:
        log.error("backfill failed: %s; run the same command again to resume", describe_error(exc))
        return EXIT_FAILED
    return EXIT_OK


def run_dlq(settings: Settings, args: argparse.Namespace) -> int:
    try:
        feed = settings.feed(args.feed)
        selection = (
            ReplaySelection(args.rule, args.from_id, args.to_id) if args.dlq_command == "replay" else ReplaySelection()
        )
    except (ConfigError, ValueError) as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.dlq_command == "show":
        return asyncio.run(_show_dead_letters(settings, feed))
    return asyncio.run(_replay_dead_letters(settings, feed, selection, args.chunk_size, args.metrics_file))


async def _show_dead_letters(settings: Settings, feed: FeedSettings) -> int:
    try:
        summary = await summarize_dead_letters(settings, feed.name)
    except (KafkaError, TopicMissingError, OSError) as exc:
        log.error("the dead-letter topic could not be read: %s", describe_error(exc))
        return EXIT_FAILED
    print(summary.render(settings.secrets()))
    return EXIT_OK


async def _replay_dead_letters(
    settings: Settings,
    feed: FeedSettings,
    selection: ReplaySelection,
    chunk_size: int | None,
    metrics_file: Path | None,
) -> int:
    _cancel_on_signals()
    metrics = ReplayMetrics(feed.name)
    replay = DlqReplay(settings, feed, selection, ReplayObservers(ReplayLog(), metrics), chunk_size=chunk_size)
    try:
        progress = await replay.run()
    except asyncio.CancelledError:
        log.error("dead-letter replay stopped before its end; run the same command again to resume")
        return EXIT_FAILED
    except DlqReplayError as exc:
        log.error("dead-letter replay stopped: %s", exc)
        return EXIT_FAILED
    except (TopicSetupError, TopicMissingError, KafkaError, OSError) as exc:
        log.error("dead-letter replay failed: %s; run the same command again to resume", describe_error(exc))
        return EXIT_FAILED
    finally:
        if metrics_file is not None:
            metrics.write(metrics_file)
    print(f"feed {feed.name}: dead-letter replay {progress.run} ({selection.label}): {progress.summary()}")
    return EXIT_OK


async def show_state(settings: Settings) -> int:
    try:
        offsets = await read_offsets(settings.kafka, settings.topics.state)
    except StateReadError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    print(f"{'feed':<24} {'last_id':>14}  committed_at")
    for feed in settings.feeds:
        stored = offsets.get(feed.name)
        if stored is None:
            print(f"{feed.name:<24} {'-':>14}  (nothing stored; starts after ID {feed.initial_from_id})")
        else:
            print(f"{feed.name:<24} {stored.last_id:>14}  {stored.committed_at or '-'}")
    for name in sorted(set(offsets) - {feed.name for feed in settings.feeds}):
        print(f"{name:<24} {offsets[name].last_id:>14}  (not in this configuration)")
    return EXIT_OK


async def set_state(settings: Settings, feed_name: str, last_id: int) -> int:
    try:
        settings.feed(feed_name)
    except ConfigError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if last_id < 0:
        print("cdr-stream: --last-id must be >= 0", file=sys.stderr)
        return EXIT_CONFIG
    members = await running_members(settings.kafka, feed_name)
    if members:
        print(
            f"cdr-stream: refused: the connector of feed {feed_name!r} is running ({len(members)} "
            f"instance(s) in group {presence_group(settings.kafka, feed_name)!r}). Stop it first (for "
            f"example scale the deployment to 0); a killed connector is forgotten "
            f"{SESSION_TIMEOUT_MS // 1000} s after it died.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    # The feed's own transactional id: should a connector start unseen meanwhile, this fences it, so it
    # cannot overwrite the new offset with an older one.
    writer = TransactionalWriter(settings.kafka, settings.topics, feed_name)
    try:
        await prepare_topics(settings.kafka, settings.topics)
        await writer.start()
        before = (await read_offsets(settings.kafka, settings.topics.state)).get(feed_name)
        await writer.commit(ProcessedChunk(), last_id)
    except (WriteError, StateReadError, TopicSetupError, KafkaError, TimeoutError) as exc:
        log.error("the offset was not changed: %s", describe_error(exc))
        return EXIT_FAILED
    finally:
        await writer.stop()
    print(f"{feed_name}: last_id {before.last_id if before else '-'} -> {last_id}")
    return EXIT_OK


async def verify_feed(settings: Settings, feed_name: str, expect_ids: Path | None, expect_range: str | None) -> int:
    expectation: Expectation | None = None
    try:
        settings.feed(feed_name)
        if expect_ids is not None:
            expectation = await asyncio.to_thread(read_id_file, expect_ids)
        elif expect_range is not None:
            expectation = parse_range(expect_range)
    except (ConfigError, ExpectationError) as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = await check_feed(settings.kafka, settings.topics, feed_name, expectation)
    except (KafkaError, TopicMissingError, OSError) as exc:
        log.error("the check could not read the topics: %s", describe_error(exc))
        return EXIT_FAILED
    print(result.summary())
    return EXIT_OK if result.clean else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
