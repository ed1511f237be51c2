from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal

import orjson
import pytest

from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.simulator import FeedSimulator, SimulatorConfig

from .conftest import StartFeed
from .feed_client import PASSWORD


async def test_start_binds_a_free_port_and_stop_is_idempotent() -> None:
    sim = FeedSimulator(SimulatorConfig(password=PASSWORD))
    await sim.start()
    assert sim.url.startswith("http://127.0.0.1:")
    assert sim.url.endswith("/billingfeed.php")
    assert not sim.url.endswith(":0/billingfeed.php")
    await sim.stop()
    await sim.stop()


@pytest.mark.parametrize(
    "credentials",
    [{"login": "demo", "password": "wrong"}, {"login": "other", "password": PASSWORD}, {"login": "demo"}, {}],
)
async def test_bad_credentials_get_401(start_feed: StartFeed, credentials: dict[str, str]) -> None:
    feed = await start_feed()
    answer = await feed.call("POST", form={**credentials, "fromid": "0"})
    assert answer.status == 401
    assert "invalid login or password" in answer.text
    assert PASSWORD not in answer.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "fromid"),
        ({"fromid": "abc"}, "fromid"),
        ({"fromid": "0", "format": "xml"}, "format"),
        ({"fromid": "0", "date": "2023-02-30"}, "date"),
        ({"fromid": "0", "date": "20230402"}, "date"),
        ({"fromid": "0", "date": "2023-04-02", "hour": "24"}, "hour"),
        ({"fromid": "0", "date": "2023-04-02", "hour": "x"}, "hour"),
        ({"fromid": "0", "hour": "5"}, "hour"),
    ],
)
async def test_bad_parameters_get_400(start_feed: StartFeed, params: dict[str, str], message: str) -> None:
    feed = await start_feed()
    answer = await feed.post(**params)
    assert answer.status == 400
    assert message in answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")


async def test_fromid_is_strictly_greater_and_rows_ascend(start_feed: StartFeed) -> None:
    feed = await start_feed(records=50)
    assert await feed.ids(fromid=10) == list(range(11, 51))
    assert await feed.ids(fromid=0) == list(range(1, 51))
    assert await feed.ids(fromid=50) == []
    empty_csv = await feed.post(fromid=50)
    assert empty_csv.status == 200
    assert empty_csv.text == ",".join(FEED_FIELDS) + "\n"


async def test_page_size_caps_answers_and_paging_collects_everything_once(start_feed: StartFeed) -> None:
    feed = await start_feed(records=95, page_size=20)
    assert await feed.ids(fromid=0) == list(range(1, 21))
    collected: list[int] = []
    while page := await feed.ids(fromid=collected[-1] if collected else 0):
        assert len(page) <= 20
        collected += page
    assert collected == list(range(1, 96))


async def test_post_wins_over_get(start_feed: StartFeed) -> None:
    feed = await start_feed(records=30)
    answer = await feed.call(
        "POST",
        query={"login": "demo", "password": "wrong", "fromid": "0", "format": "csv"},
        form={"password": PASSWORD, "fromid": "25", "format": "json"},
    )
    assert answer.status == 200
    assert [row["ID"] for row in answer.rows("json")] == [26, 27, 28, 29, 30]
    refused = await feed.call(
        "POST",
        query={"login": "demo", "password": PASSWORD, "fromid": "0"},
        form={"password": "wrong"},
    )
    assert refused.status == 401


async def test_get_parameters_work_alone(start_feed: StartFeed) -> None:
    feed = await start_feed(records=5)
    answer = await feed.call(
        "GET",
        query={"login": "demo", "password": PASSWORD, "fromid": "3", "format": "json"},
    )
    assert [row["ID"] for row in answer.rows("json")] == [4, 5]


async def test_date_filter_returns_that_local_day_only(start_feed: StartFeed) -> None:
    # NZ rows only: a row whose offset is spelled may be written in another zone's local time.
    feed = await start_feed(records=2000, offset_spelling_rate=0)
    expected = [i for i in feed.sim.ids() if feed.sim.record(i)["Date"] == "2023-04-02"]
    assert len(expected) > 100
    assert await feed.ids(fromid=0, date="2023-04-02") == expected
    later = expected[len(expected) // 2]
    assert await feed.ids(fromid=later, date="2023-04-02") == [i for i in expected if i > later]


async def test_hour_filter_covers_the_repeated_hour_at_dst_end(start_feed: StartFeed) -> None:
    feed = await start_feed(records=2000, offset_spelling_rate=0)
    rows = await feed.rows(fromid=0, date="2023-04-02", hour=2)
    expected = [
        i
        for i in feed.sim.ids()
        if feed.sim.record(i)["Date"] == "2023-04-02" and str(feed.sim.record(i)["Time"])[:2] == "02"
    ]
    assert [row["ID"] for row in rows] == expected
    # 02:00-03:00 happened twice that night: once in daylight time, once in standard time.
    assert {row["UTCOffset"] for row in rows} == {12, 13}


async def test_date_filter_honours_page_size(start_feed: StartFeed) -> None:
    feed = await start_feed(records=2000, page_size=10, offset_spelling_rate=0)
    ids = await feed.ids(fromid=0, date="2023-04-03")
    assert len(ids) == 10
    assert all(feed.sim.record(i)["Date"] == "2023-04-03" for i in ids)


async def test_callsonly_and_servicesonly_split_the_rows(start_feed: StartFeed) -> None:
    feed = await start_feed(records=600)
    calls = await feed.rows(fromid=0, callsonly=1)
    services = await feed.rows(fromid=0, servicesonly=1)
    assert calls
    assert services
    assert all(row["CallType"] != "Service" for row in calls)
    assert all(row["CallType"] == "Service" for row in services)
    assert any(row["AParty"] == "" for row in services), "account-level fees and credits are services too"
    assert sorted(row["ID"] for row in calls + services) == list(range(1, 601))
    assert await feed.ids(fromid=0, callsonly=0) == list(range(1, 601))


@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe"])
async def test_text_formats_parse_back_to_the_json_rows(start_feed: StartFeed, fmt: str) -> None:
    feed = await start_feed(records=3000, numbers_as="string", invalid_rate=0.05)
    json_rows = await feed.rows("json", fromid=0)
    answer = await feed.post(fromid=0, format=fmt)
    assert answer.headers["Content-Type"].startswith("text/csv" if fmt == "csv" else "text/plain")
    text_rows = answer.rows(fmt)
    # A row missing a field in JSON has that column empty in text.
    assert text_rows == [{name: row.get(name, "") for name in FEED_FIELDS} for row in json_rows]
    assert answer.text.splitlines()[0].split({"csv": ",", "txt": "\t", "pipe": "|"}[fmt]) == list(FEED_FIELDS)
    descriptions = [row["TextDesc2"] for row in text_rows]
    for tricky in (",", '"', "|", "\t"):
        assert any(tricky in text for text in descriptions)


async def test_json_numbers_as_number(start_feed: StartFeed) -> None:
    feed = await start_feed(records=200)
    answer = await feed.post(fromid=0, format="json")
    assert answer.headers["Content-Type"].startswith("application/json")
    rows = answer.rows()
    for row in rows:
        quirks = feed.sim.generator.quirks(row["ID"])
        # What PHP writes: a whole float as 60.0, an offset as "+13" or "13:00" (a string).
        whole = float if "whole_float" in quirks else int
        for name in ("Seconds", "NetworkSeconds", "ConnectSeconds", "FreeUnitsUsed"):
            assert type(row[name]) is whole
        assert type(row["UTCOffset"]) is (str if "offset_spelling" in quirks else int)
        assert type(row["ID"]) is int
        assert isinstance(row["Charge"], float)
        assert isinstance(row["ReleaseCause"], str)
    # Money is written with its exact decimal digits, never through a binary float.
    exact = json.loads(answer.text, parse_float=Decimal)
    for row in exact:
        record = feed.sim.record(row["ID"])
        assert (row["Charge"], row["ChargeExcl"]) == (record["Charge"], record["ChargeExcl"])
        assert str(row["ChargeExcl"]) == str(record["ChargeExcl"])


async def test_json_numbers_as_string(start_feed: StartFeed) -> None:
    feed = await start_feed(records=200, numbers_as="string")
    rows = await feed.rows(fromid=0)
    assert all(isinstance(value, str) for row in rows for value in row.values())
    assert rows[0]["ID"] == "1"
    expected = [str(feed.sim.record(i)["ChargeExcl"]) for i in feed.sim.ids()]
    assert [row["ChargeExcl"] for row in rows] == expected


async def test_served_rows_match_the_records(start_feed: StartFeed) -> None:
    feed = await start_feed(records=100, numbers_as="string", seed=99)
    rows = await feed.rows(fromid=0)
    assert rows == [{k: str(v) for k, v in feed.sim.record(i).items()} for i in feed.sim.ids()]
    with pytest.raises(KeyError):
        feed.sim.record(101)


async def test_invalid_rows_are_served_as_generated(start_feed: StartFeed) -> None:
    feed = await start_feed(records=1000, invalid_rate=0.1)
    rows = {row["ID"]: row for row in await feed.rows(fromid=0)}
    invalid = {i for i in feed.sim.ids() if feed.sim.is_invalid(i)}
    assert 50 < len(invalid) < 150
    assert {i for i, row in rows.items() if "AccountCode" not in row} == {
        i for i in invalid if feed.sim.invalid_kind(i) == "missing_account"
    }
    blank = {i for i, row in rows.items() if row.get("AccountCode") == ""}
    assert blank == {i for i in invalid if feed.sim.invalid_kind(i) == "blank_account"}


async def test_request_log_describes_requests_without_the_password(
    start_feed: StartFeed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    feed = await start_feed(records=10)
    await feed.post(fromid=4, format="json")
    await feed.call("GET", query={"login": "demo", "password": PASSWORD, "fromid": "8"})
    await feed.call("POST", form={"login": "demo", "password": PASSWORD + "x", "fromid": "1"})
    first, second, third = feed.sim.requests
    assert (first.method, first.fromid, first.rows, first.status) == ("POST", 4, 6, 200)
    assert first.password_in_body
    assert not first.password_in_query
    assert set(first.form_keys) == {"login", "password", "fromid", "format"}
    assert first.query_keys == ()
    assert (second.method, second.rows) == ("GET", 2)
    assert second.password_in_query
    assert not second.password_in_body
    assert (third.status, third.rows) == (401, 0)
    assert PASSWORD not in repr(feed.sim.requests)
    assert PASSWORD not in caplog.text
    assert "fromid=8 rows=2 status=200" in caplog.text


async def test_stats_endpoint(start_feed: StartFeed) -> None:
    feed = await start_feed(records=40)
    await feed.ids(fromid=15)
    async with feed.session.get(feed.sim.url.replace("/billingfeed.php", "/_sim/stats")) as response:
        stats = orjson.loads(await response.read())
    assert stats == {"max_id": 40, "records": 40, "requests": 1, "rows_served": 25}


async def test_add_records_and_live_mode(start_feed: StartFeed) -> None:
    feed = await start_feed(records=10)
    assert feed.sim.add_records(5) == 15
    assert await feed.ids(fromid=10) == [11, 12, 13, 14, 15]
    live = await start_feed(records=10, rate=200)
    await asyncio.sleep(0.3)
    assert live.sim.max_id >= 40
    assert (await live.ids(fromid=10))[:5] == [11, 12, 13, 14, 15]


async def test_a_large_answer_streams_in_chunks(start_feed: StartFeed) -> None:
    feed = await start_feed(records=100_000)
    async with feed.session.post(
        feed.sim.url,
        data={"login": "demo", "password": PASSWORD, "fromid": "0", "format": "json"},
    ) as response:
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.headers
        chunks = [chunk async for chunk in response.content.iter_any()]
    assert len(chunks) > 10
    rows = orjson.loads(b"".join(chunks))
    assert len(rows) == 100_000
    assert [row["ID"] for row in rows] == list(range(1, 100_001))
    csv_rows = await feed.rows("csv", fromid=99_000)
    assert [int(row["ID"]) for row in csv_rows] == list(range(99_001, 100_001))


async def test_preload_serves_the_same_bytes(start_feed: StartFeed) -> None:
    lazy = await start_feed(records=300, seed=5)
    eager = await start_feed(records=300, seed=5, preload=True)
    assert (await lazy.post(fromid=0, format="json")).text == (await eager.post(fromid=0, format="json")).text
