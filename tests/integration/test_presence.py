"""The presence groups on the real broker: one rival watch answers for every feed of a process."""

from __future__ import annotations

import asyncio
import time

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.kafka.presence import FeedPresence, RivalWatch, running_members
from cdr_stream.kafka.topics import prepare_topics

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


async def wait_members(kafka: KafkaSettings, feed: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(await running_members(kafka, feed)) != count:
        assert time.monotonic() < deadline, f"feed {feed} never had {count} presence member(s)"
        await asyncio.sleep(0.5)


async def test_one_watch_tells_the_feed_with_a_rival_from_the_feeds_without_one(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    kafka = kafka.model_copy(update={"transactional_id_prefix": f"{topics.state}-tx"})
    await prepare_topics(kafka, topics)
    # Feed "east" runs twice (this process and a rival), "west" once, "north" not at all.
    presences = [FeedPresence(kafka, topics.state, feed) for feed in ("east", "east", "west")]
    watch = RivalWatch(kafka)
    try:
        for presence in presences:
            await presence.start()
        await wait_members(kafka, "east", 2)
        await wait_members(kafka, "west", 1)
        assert await watch.has_rival("east")
        assert not await watch.has_rival("west")
        assert not await watch.has_rival("north")
        # The rival leaves: the next answer says so.
        await presences.pop(0).stop()
        await wait_members(kafka, "east", 1)
        assert not await watch.has_rival("east")
    finally:
        for presence in presences:
            await presence.stop()
        await watch.close()
