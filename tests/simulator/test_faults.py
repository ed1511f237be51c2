from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from .conftest import StartFeed
from .feed_client import PASSWORD, FeedClient


async def raw_body(feed: FeedClient, fmt: str) -> tuple[int, bytes, bool]:
    """Status, the bytes that arrived, and whether the body ended cleanly."""
    received = bytearray()
    form = {"login": "demo", "password": PASSWORD, "fromid": "0", "format": fmt}
    async with feed.session.post(feed.sim.url, data=form) as response:
        try:
            async for chunk in response.content.iter_any():
                received += chunk
        except aiohttp.ClientPayloadError:
            return response.status, bytes(received), False
        return response.status, bytes(received), True


async def test_5xx_errors(start_feed: StartFeed) -> None:
    feed = await start_feed(error_5xx_rate=1.0)
    statuses = set()
    for _ in range(30):
        answer = await feed.post(fromid=0)
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "<html>" in answer.text
        statuses.add(answer.status)
    assert statuses == {500, 502, 503}
    assert {record.fault for record in feed.sim.requests} == {"error_5xx"}


async def test_rate_limit_sends_retry_after(start_feed: StartFeed) -> None:
    feed = await start_feed(rate_limit_rate=1.0, retry_after_seconds=7)
    answer = await feed.post(fromid=0)
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "7"


async def test_latency_delays_answers(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, latency_ms=200)
    started = time.monotonic()
    assert await feed.ids(fromid=0) == [1, 2, 3, 4, 5]
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_truncate_cuts_a_row_and_drops_the_connection(start_feed: StartFeed, fmt: str) -> None:
    feed = await start_feed(records=40, truncate_rate=1.0)
    status, body, clean = await raw_body(feed, fmt)
    assert status == 200
    assert not clean
    text = body.decode()
    assert "\n21," in text or '"ID":21,' in text  # the cut row has begun ...
    assert '"ID":22,' not in text
    assert "\n22," not in text
    assert not text.endswith("\n")
    if fmt == "json":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
    assert feed.sim.requests[-1].fault == "truncate"
    feed.sim.set_faults(truncate_rate=0.0)
    assert await feed.ids(fromid=0) == list(range(1, 41))


async def test_html_error_page_with_status_200(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, html_error_rate=1.0)
    answer = await feed.post(fromid=0, format="json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<b>Warning</b>" in answer.text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(answer.text)


async def test_duplicates_repeat_rows_within_an_answer(start_feed: StartFeed) -> None:
    feed = await start_feed(records=100, duplicate_rate=1.0)
    ids = await feed.ids(fromid=0)
    assert len(ids) > 100
    assert sorted(set(ids)) == list(range(1, 101))
    assert ids == sorted(ids)
    assert feed.sim.requests[-1].rows == len(ids)


async def test_out_of_order_shuffles_rows(start_feed: StartFeed) -> None:
    feed = await start_feed(records=100, out_of_order=True)
    ids = await feed.ids(fromid=0)
    assert ids != sorted(ids)
    assert sorted(ids) == list(range(1, 101))


async def test_resend_includes_already_delivered_rows(start_feed: StartFeed) -> None:
    feed = await start_feed(records=30, resend_rate=1.0)
    ids = await feed.ids(fromid=20)
    assert [i for i in ids if i > 20] == list(range(21, 31))
    assert 0 < len([i for i in ids if i <= 20]) <= 5
    assert ids == sorted(ids)
    services = await feed.rows(fromid=25, servicesonly=1)
    assert all(row["CallType"] == "Service" for row in services)


async def test_faults_replay_for_the_same_seed(start_feed: StartFeed) -> None:
    async def statuses(seed: int) -> list[int]:
        feed = await start_feed(records=5, seed=seed, error_5xx_rate=0.3, rate_limit_rate=0.3)
        return [(await feed.post(fromid=0)).status for _ in range(40)]

    first = await statuses(1)
    assert first == await statuses(1)
    assert first != await statuses(2)
    assert {200, 429} <= set(first)
    assert set(first) & {500, 502, 503}


async def test_set_faults_changes_faults_at_run_time(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5)
    assert (await feed.post(fromid=0)).status == 200
    feed.sim.set_faults(error_5xx_rate=1.0)
    assert (await feed.post(fromid=0)).status >= 500
    feed.sim.set_faults(error_5xx_rate=0.0, rate_limit_rate=1.0)
    assert (await feed.post(fromid=0)).status == 429
    with pytest.raises(TypeError):
        feed.sim.set_faults(password="new")  # type: ignore[arg-type]
