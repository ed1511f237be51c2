"""`cdr-stream state show` and `state set`: read the stored offsets, or store a new one for a stopped feed."""

from __future__ import annotations

import asyncio
import sys

from aiokafka.errors import KafkaError

from cdr_stream.commands.common import Commands, Exit, add_config, log
from cdr_stream.config import Settings
from cdr_stream.errors import ConfigError, StateReadError, TopicSetupError, WriteError
from cdr_stream.kafka.presence import SESSION_TIMEOUT_MS, presence_group, running_members
from cdr_stream.kafka.state import read_offsets
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.ops.logs import describe_error
from cdr_stream.records.processor import ProcessedChunk


def add_to(commands: Commands) -> None:
    state = commands.add_parser("state", help="read or set the stored offsets")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    show = state_commands.add_parser("show", help="print each feed's stored offset (last committed ID)")
    add_config(show)
    set_ = state_commands.add_parser("set", help="store a new offset for a feed (rewind or skip)")
    add_config(set_)
    set_.add_argument("--feed", required=True, help="the feed name, as configured")
    set_.add_argument("--last-id", type=int, required=True, help="the ID to resume after")
    show.set_defaults(handler=lambda settings, args: asyncio.run(show_state(settings)))
    set_.set_defaults(handler=lambda settings, args: asyncio.run(set_state(settings, args.feed, args.last_id)))


async def show_state(settings: Settings) -> int:
    try:
        offsets = await read_offsets(settings.kafka, settings.topics.state)
    except StateReadError as exc:
        log.error("%s", exc)
        return Exit.FAILED
    print(f"{'feed':<24} {'last_id':>14}  committed_at")
    for feed in settings.feeds:
        stored = offsets.get(feed.name)
        if stored is None:
            print(f"{feed.name:<24} {'-':>14}  (nothing stored; starts after ID {feed.initial_from_id})")
        else:
            print(f"{feed.name:<24} {stored.last_id:>14}  {stored.committed_at or '-'}")
    for name in sorted(set(offsets) - {feed.name for feed in settings.feeds}):
        print(f"{name:<24} {offsets[name].last_id:>14}  (not in this configuration)")
    return Exit.OK


async def set_state(settings: Settings, feed_name: str, last_id: int) -> int:
    try:
        settings.feed(feed_name)
    except ConfigError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return Exit.CONFIG
    if last_id < 0:
        print("cdr-stream: --last-id must be >= 0", file=sys.stderr)
        return Exit.CONFIG
    members = await running_members(settings.kafka, feed_name)
    if members:
        print(
            f"cdr-stream: refused: the connector of feed {feed_name!r} is running ({len(members)} "
            f"instance(s) in group {presence_group(settings.kafka, feed_name)!r}). Stop it first (for "
            f"example scale the deployment to 0); a killed connector is forgotten "
            f"{SESSION_TIMEOUT_MS // 1000} s after it died.",
            file=sys.stderr,
        )
        return Exit.FAILED
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
        return Exit.FAILED
    finally:
        await writer.stop()
    print(f"{feed_name}: last_id {before.last_id if before else '-'} -> {last_id}")
    return Exit.OK
