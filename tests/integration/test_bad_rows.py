"""Odd rows on the real broker: a call Kafka itself would refuse must be dead-lettered, not block the feed (a
refused record fails its whole transaction, and the retry sends it again); a billing record with odd
descriptive values, or with no numbers at all, must be published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cdr_stream.config import FeedSettings, KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.errors import DeadLetterRule
from cdr_stream.records.processor import usable_id
from cdr_stream.sources.http import FeedResponse
from tests.integration.support import FEED, PASSWORD, Published, read_published, wait_for
from tests.properties import EVENT_VALIDATOR
from tests.rows import feed_row
from tests.sources.test_http import CannedResponse

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


class FixedFeed:
    """A feed that holds fixed rows and answers each query with those after its fromid."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    @asynccontextmanager
    async def post(self, url: str, form: Mapping[str, str]) -> AsyncIterator[FeedResponse]:
        after = int(form["fromid"])
        yield CannedResponse(body=orjson.dumps([row for row in self.rows if (usable_id(row) or 0) > after]))

    async def close(self) -> None:
        pass


def fixed_feed_settings(kafka: KafkaSettings, topics: TopicSettings) -> Settings:
    return parse_settings(
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


async def run_to(feed: FixedFeed, last_id: int, kafka: KafkaSettings, topics: TopicSettings) -> Published:
    """Run the connector on `feed` until its offset reaches `last_id`; what the topics then hold."""

    def transport(_: FeedSettings) -> FixedFeed:
        return feed

    connector = Connector(fixed_feed_settings(kafka, topics), transport_factory=transport)
    await connector.start()
    try:
        await wait_for(lambda: connector.pollers[0].last_id == last_id, 60, f"the feed to reach ID {last_id}")
    finally:
        await connector.stop()
    return await read_published(kafka, topics)


async def test_a_call_from_the_future_is_dead_lettered_and_the_feed_moves_on(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    # Kafka 4 refuses a record timestamp more than an hour ahead (log.message.timestamp.after.max.ms).
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    feed = FixedFeed([feed_row(1), feed_row(2, UTCDateTime=future), feed_row(3)])
    published = await run_to(feed, 3, kafka, topics)
    assert published.event_ids() == [1, 3]
    (letter,) = [orjson.loads(record.value) for record in published.dead_letters]
    assert (letter["id"], letter["rule"], letter["field"]) == (2, DeadLetterRule.INVALID_VALUE, "UTCDateTime")
    assert "ahead of this host's clock" in letter["reason"]


async def test_records_with_unreadable_descriptive_values_or_no_numbers_are_published(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    rows = [
        feed_row(1, BillDate="31/02/2026", Seconds="12x", UTCOffset="13:60"),
        # A monthly number rental, a broadband fee and a credit billed to the account: no AParty, no BParty.
        feed_row(2, AParty="", BParty="", BillNumber="", Direction="", CallType="Service", TextDesc1="Rental"),
        feed_row(3, AParty=None, BParty=None, CallType="Service", Charge="-17.25", ChargeExcl="-15.00"),
        feed_row(4, BillDate="0000-00-00", Seconds="60.0", UTCOffset="+12:45", FreeUnitsUsed="1.5", ID=" 4 "),
        feed_row(5, UTCDateTime="0000-00-00 00:00:00"),  # no call time: it cannot be ordered, a dead letter
    ]
    published = await run_to(FixedFeed(rows), 5, kafka, topics)
    events = {event["id"]: event for event in (orjson.loads(record.value) for record in published.events)}
    for event in events.values():
        EVENT_VALIDATOR.validate(event)
    assert sorted(events) == [1, 2, 3, 4]
    assert events[1]["unreadable"] == {"BillDate": "31/02/2026", "UTCOffset": "13:60", "Seconds": "12x"}
    assert (events[1]["bill_date"], events[1]["seconds"], events[1]["utc_offset_hours"]) == (None, None, None)
    assert (events[2]["a_party"], events[2]["b_party"], events[2]["charge"]) == (None, None, "0.4485")
    assert (events[3]["charge"], events[3]["charge_excl"]) == ("-17.25", "-15")
    assert (events[4]["bill_date"], events[4]["seconds"], events[4]["utc_offset_hours"]) == (None, 60, 12.75)
    assert events[4]["free_units_used"] == 1.5
    assert all("unreadable" not in events[i] for i in (2, 3, 4))
    (letter,) = [orjson.loads(record.value) for record in published.dead_letters]
    assert (letter["id"], letter["rule"], letter["field"]) == (5, DeadLetterRule.INVALID_VALUE, "UTCDateTime")
