"""`cdr-stream backfill`: publish a past window of one feed again, hour by hour, marked as replayed."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from cdr_stream.commands.common import Commands, Exit, add_config, argument, log, run_to_end
from cdr_stream.config import FeedSettings, Settings, TopicSettings
from cdr_stream.errors import ConfigError
from cdr_stream.ops.progress import BackfillReport
from cdr_stream.pipeline.backfill import Backfill, BackfillWindow, parse_day, parse_hour, replay_topics


def add_to(commands: Commands) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="publish a past window of one feed again, hour by hour, marked as replayed",
        description="Ask the feed for the rows of a past window (its date/hour parameters, one hour at a "
        "time) and publish them again with a cdr-replay header, exactly once per run. The feed's own offset "
        "is not touched. Run the same command again to resume after a crash or a stop.",
    )
    add_config(backfill)
    backfill.add_argument("--feed", required=True, help="the feed name, as configured")
    backfill.add_argument(
        "--date", required=True, type=argument(parse_day), help="the provider-local day to replay, YYYY-MM-DD"
    )
    backfill.add_argument("--hour", type=argument(parse_hour), help="only this hour (0 to 23) of --date")
    backfill.add_argument(
        "--to-date", type=argument(parse_day), help="replay every day from --date to this one (inclusive)"
    )
    backfill.add_argument("--topic", help="publish the events to this topic instead of the events topic")
    backfill.add_argument(
        "--restart", action="store_true", help="start the window over as a new run even if an earlier run finished"
    )
    backfill.set_defaults(handler=run_backfill)


def run_backfill(settings: Settings, args: argparse.Namespace) -> int:
    try:
        feed = settings.feed(args.feed)
        window = BackfillWindow(args.date, args.to_date or args.date, args.hour)
        warning = window.check_against(datetime.now(UTC))
        topics = replay_topics(settings.topics, args.topic)
    except (ConfigError, ValueError) as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return Exit.CONFIG
    if warning:
        log.warning("%s", warning)
    report = BackfillReport(sys.stderr if sys.stderr.isatty() else None)
    return asyncio.run(_backfill(settings, feed, window, report, topics, args.restart))


async def _backfill(
    settings: Settings,
    feed: FeedSettings,
    window: BackfillWindow,
    report: BackfillReport,
    topics: TopicSettings,
    restart: bool,
) -> int:
    run = Backfill(settings, feed, window, report, topics=topics, restart=restart)
    return Exit.FAILED if await run_to_end(run) is None else Exit.OK
