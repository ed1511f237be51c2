"""`cdr-stream dlq show` and `dlq replay`: a feed's dead letters, counted, or replayed with today's rules."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiokafka.errors import KafkaError

from cdr_stream.commands.common import Commands, Exit, add_config, argument, log, positive, run_to_end
from cdr_stream.config import FeedSettings, Settings
from cdr_stream.errors import ConfigError, TopicMissingError
from cdr_stream.ops.logs import describe_error
from cdr_stream.ops.metrics import ReplayMetrics
from cdr_stream.pipeline.dlq import DlqReplay, ReplayLog, ReplayObservers, ReplaySelection, summarize_dead_letters


def add_to(commands: Commands) -> None:
    dlq = commands.add_parser("dlq", help="look at a feed's dead letters, or replay them with today's rules")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_show = dlq_commands.add_parser(
        "show", help="count a feed's dead letters by rule and field, with the oldest, the newest and samples"
    )
    add_config(dlq_show)
    dlq_show.add_argument("--feed", required=True, help="the feed name, as configured")
    replay = dlq_commands.add_parser(
        "replay",
        help="publish the dead letters today's rules accept, each ID once, marked as replayed",
        description="Read the feed's dead letters and put each row through today's rules. A row that passes "
        "is published to the events topic with a cdr-replay header, unless the events topic already holds its "
        "ID; a row that still fails stays in the dead-letter topic. Exactly once, a transaction per chunk: "
        "run the same command again to resume after a crash or a stop. Safe while the feed's connector runs.",
    )
    add_config(replay)
    replay.add_argument("--feed", required=True, help="the feed name, as configured")
    replay.add_argument("--rule", help="only the dead letters of this rule (as dlq show names it)")
    replay.add_argument("--from-id", type=argument(positive), help="only dead letters with an ID from this one")
    replay.add_argument("--to-id", type=argument(positive), help="only dead letters with an ID up to this one")
    replay.add_argument(
        "--chunk-size",
        type=argument(positive),
        help="dead letters per transaction (default: the feed's max_rows_per_transaction)",
    )
    replay.add_argument(
        "--metrics-file", type=Path, metavar="FILE", help="write the run's metrics here (Prometheus text format)"
    )
    dlq.set_defaults(handler=run_dlq)


def run_dlq(settings: Settings, args: argparse.Namespace) -> int:
    try:
        feed = settings.feed(args.feed)
        selection = (
            ReplaySelection(args.rule, args.from_id, args.to_id) if args.dlq_command == "replay" else ReplaySelection()
        )
    except (ConfigError, ValueError) as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return Exit.CONFIG
    if args.dlq_command == "show":
        return asyncio.run(_show_dead_letters(settings, feed))
    return asyncio.run(_replay_dead_letters(settings, feed, selection, args.chunk_size, args.metrics_file))


async def _show_dead_letters(settings: Settings, feed: FeedSettings) -> int:
    try:
        summary = await summarize_dead_letters(settings, feed.name)
    except (KafkaError, TopicMissingError, OSError) as exc:
        log.error("the dead-letter topic could not be read: %s", describe_error(exc))
        return Exit.FAILED
    print(summary.render(settings.secrets()))
    return Exit.OK


async def _replay_dead_letters(
    settings: Settings,
    feed: FeedSettings,
    selection: ReplaySelection,
    chunk_size: int | None,
    metrics_file: Path | None,
) -> int:
    metrics = ReplayMetrics(feed.name)
    replay = DlqReplay(settings, feed, selection, ReplayObservers(ReplayLog(), metrics), chunk_size=chunk_size)
    try:
        progress = await run_to_end(replay)
    finally:
        if metrics_file is not None:
            metrics.write(metrics_file)
    if progress is None:
        return Exit.FAILED
    print(f"feed {feed.name}: dead-letter replay {progress.run} ({selection.label}): {progress.summary()}")
    return Exit.OK
