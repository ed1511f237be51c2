"""`cdr-stream verify`: check a feed's committed output, every ID once, per-account order, the offset."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiokafka.errors import KafkaError

from cdr_stream.commands.common import Commands, Exit, add_config, log
from cdr_stream.config import Settings
from cdr_stream.errors import ConfigError, ExpectationError, TopicMissingError
from cdr_stream.ops.checker import Expectation, check_feed, parse_range, read_id_file
from cdr_stream.ops.logs import describe_error


def add_to(commands: Commands) -> None:
    verify = commands.add_parser(
        "verify",
        help="check a feed's committed output: every ID once, per-account order, the stored offset "
        "(exit 0 clean, 1 problems found)",
    )
    add_config(verify)
    verify.add_argument("--feed", required=True, help="the feed name, as configured")
    expect = verify.add_mutually_exclusive_group()
    expect.add_argument("--expect-ids", type=Path, metavar="FILE", help="a file of the expected IDs, one per line")
    expect.add_argument("--expect-range", metavar="A-B", help="the expected IDs, A to B (both included)")
    verify.set_defaults(
        handler=lambda settings, args: asyncio.run(verify_feed(settings, args.feed, args.expect_ids, args.expect_range))
    )


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
        return Exit.CONFIG
    try:
        result = await check_feed(settings.kafka, settings.topics, feed_name, expectation)
    except (KafkaError, TopicMissingError, OSError) as exc:
        log.error("the check could not read the topics: %s", describe_error(exc))
        return Exit.FAILED
    print(result.summary())
    return Exit.OK if result.clean else Exit.FAILED
