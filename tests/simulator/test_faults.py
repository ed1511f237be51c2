from __future__ import annotations

import asyncio
import contextlib
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


async def test_reset_drops_the_connection_without_an_answer(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, reset_rate=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await feed.post(fromid=0)
    assert feed.sim.requests[-1].fault == "reset"


async def test_drip_sends_the_answer_one_byte_at_a_time(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, drip_rate=1.0, drip_interval_ms=50)
    form = {"login": "demo", "password": PASSWORD, "fromid": "0", "format": "json"}
    pieces: list[bytes] = []
    started = time.monotonic()
    async with feed.session.post(feed.sim.url, data=form) as response:
        assert response.status == 200
        while len(pieces) < 6:
            pieces.append(await response.content.readany())
    assert b"".join(pieces) == b'[\n{"ID'
    assert time.monotonic() - started >= 0.2  # six bytes, 50 ms apart
    assert feed.sim.requests[-1].fault == "drip"


async def test_empty_body_and_an_object_instead_of_an_array(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, empty_body_rate=1.0)
    empty = await feed.post(fromid=0, format="json")
    assert (empty.status, empty.text) == (200, "")
    feed.sim.set_faults(empty_body_rate=0.0, not_array_rate=1.0)
    not_array = await feed.post(fromid=0, format="json")
    assert not_array.status == 200
    assert isinstance(orjson.loads(not_array.text), dict)
    assert [record.fault for record in feed.sim.requests] == ["empty_body", "not_array"]


async def test_oversize_rows_carry_a_huge_extra_field(start_feed: StartFeed) -> None:
    feed = await start_feed(records=10, oversize_every=4, oversize_bytes=300_000)
    rows = await feed.rows(fromid=0)
    huge = [row["ID"] for row in rows if len(row.get("Notes", "")) == 300_000]
    assert huge == [4, 8]
    assert all("Notes" not in row for row in rows if row["ID"] not in (4, 8))


async def test_new_faults_leave_the_fault_sequence_of_a_seed_unchanged(start_feed: StartFeed) -> None:
    plain = await start_feed(records=5, seed=3, error_5xx_rate=0.5)
    with_more = await start_feed(records=5, seed=3, error_5xx_rate=0.5, empty_body_rate=0.5)
    first = [(await plain.post(fromid=0)).status for _ in range(20)]
    second = [(await with_more.post(fromid=0)).status for _ in range(20)]
    assert first == second


async def test_stopping_does_not_wait_for_an_answer_in_flight(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5, latency_ms=60_000)
    request = asyncio.ensure_future(feed.post(fromid=0))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await feed.sim.stop()
    assert time.monotonic() - started < 5
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
        await request
