"""Rows that pass the row schema but that Kafka itself would refuse: they must be dead-lettered, not block
the feed (a refused record fails its whole transaction, and the retry sends it again)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cdr_stream.config import FeedSettings, KafkaSettings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.feed import FeedResponse
from cdr_stream.records import RULE_INVALID_VALUE
from tests.integration.support import FEED, PASSWORD, read_published, wait_for
from tests.rows import feed_row
from tests.test_feed import CannedResponse

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


class FixedFeed:
    """A feed that holds fixed rows and answers each query with those after its fromid."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    @asynccontextmanager
    async def post(self, url: str, form: Mapping[str, str]) -> AsyncIterator[FeedResponse]:
        after = int(form["fromid"])
        yield CannedResponse(body=orjson.dumps([row for row in self.rows if row["ID"] > after]))

    async def close(self) -> None:
        pass


async def test_a_call_from_the_future_is_dead_lettered_and_the_feed_moves_on(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    # Kafka 4 refuses a record timestamp more than an hour ahead (log.message.timestamp.after.max.ms).
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    feed = FixedFeed([feed_row(1), feed_row(2, UTCDateTime=future), feed_row(3)])
    settings = parse_settings(
        {
            "feeds": [
                {
                    "name": FEED,
                    "url": "http://feed.invalid/billingfeed.php",
                    "login": "demo",
                    "password": PASSWORD,
                    "poll_interval_seconds": 0.2,
                    "backoff_initial_seconds": 0.1,
                    "backoff_max_seconds": 0.5,
                }
            ],
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
            "topics": topics.model_dump(),
        },
        {},
    )

    def transport(_: FeedSettings) -> FixedFeed:
        return feed

    connector = Connector(settings, transport_factory=transport)
    await connector.start()
    try:
        await wait_for(lambda: connector.pollers[0].last_id == 3, 60, "the feed to move past the row from the future")
    finally:
        await connector.stop()
    published = await read_published(kafka, topics)
    assert published.event_ids() == [1, 3]
    (letter,) = [orjson.loads(record.value) for record in published.dead_letters]
    assert (letter["id"], letter["rule"], letter["field"]) == (2, RULE_INVALID_VALUE, "UTCDateTime")
    assert "ahead of this host's clock" in letter["reason"]
