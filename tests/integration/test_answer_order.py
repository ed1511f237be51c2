"""A whole history in one shuffled answer, on the real broker: published whole, exactly once, also across
kill -9 while it is sorted on disk and while its chunks commit."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import KafkaSettings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.ops.checker import IdRange
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    FEED,
    PASSWORD,
    ConnectorProcess,
    assert_clean,
    finish_and_check,
    settings_for,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.kafka

RECORDS = 30_000


class PeakSpace(TempSpace):
    """A TempSpace that remembers the most disk its sorts took at once."""

    peak = 0

    def reserve(self, feed: str, size: int) -> None:
        super().reserve(feed, size)
        self.peak = max(self.peak, self.used())


def spill_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("cdr-stream-spill-*"))


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_a_shuffled_history_in_one_answer_is_published_whole(
    kafka: KafkaSettings, topics: TopicSettings, cleanup_topics: None, tmp_path: Path, fmt: str
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=RECORDS, page_size=0, out_of_order=True, invalid_rate=0.01)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, format=fmt, max_rows_per_transaction=1000)
        space = PeakSpace(tmp_path)
        connector = Connector(settings, space=space)
        await connector.start()
        try:
            await wait_for(lambda: connector.pollers[0].last_id == RECORDS or connector.stopping, 180, "the offset")
        finally:
            await connector.stop()
        await connector.wait()
        answers = [request for request in sim.requests if request.rows]
    assert answers[0].fault == "out_of_order" and answers[0].rows == RECORDS, "one shuffled answer of every row"
    assert space.peak > 0, "an answer this large is sorted on disk"
    assert spill_dirs(tmp_path) == [] and space.used() == 0, "and its files are gone once it is committed"
    result = await assert_clean(kafka, topics, IdRange(1, RECORDS))
    assert result.dead_letters > 0  # the invalid rows are accounted for as dead letters, not lost


@pytest.mark.parametrize("moment", ["while sorting", "while committing"])
async def test_kill_9_while_a_shuffled_answer_is_sorted_or_committed_loses_and_duplicates_nothing(
    kafka: KafkaSettings, topics: TopicSettings, cleanup_topics: None, tmp_path: Path, moment: str
) -> None:
    records = 60_000
    spill = tmp_path / "spill"
    config = SimulatorConfig(password=PASSWORD, records=records, page_size=0, out_of_order=True)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, max_rows_per_transaction=500).model_copy(update={"tmp_dir": spill})
        path = write_config(tmp_path / "run.toml", settings)
        log = tmp_path / "connector.log"
        first = ConnectorProcess.start(path, log)
        deadline = time.monotonic() + 120
        while True:
            assert first.process.poll() is None, first.tail()
            assert time.monotonic() < deadline, f"no moment {moment} came:\n{first.tail()}"
            runs = [run for folder in spill_dirs(spill) for run in folder.glob("run-*")]
            if moment == "while sorting" and runs:
                break
            offset = first.offset()
            if moment == "while committing" and offset is not None and 0 < offset < records:
                break
            await asyncio.sleep(0.01)
        await first.kill()
        killed_at = first.offset()
        assert killed_at is None or killed_at < records, "killed before the answer was all committed"
        left = spill_dirs(spill)
        assert left, "the killed process leaves its spill directory behind"
        result = await finish_and_check(kafka, topics, sim, path, log)
    assert result.missing_count == 0 and result.duplicate_count == 0
    assert not set(left) & set(spill_dirs(spill)), "the restart removed what the killed process left"
    assert f"feed {FEED}" in log.read_text()


def php_row(record_id: int) -> dict[str, str]:
    """A row as a PHP page over MySQL sends it: every value a string, all 26 fields."""
    minute = record_id % 1440
    return {
        "ID": str(record_id),
        "AccountCode": f"8123{record_id % 7:04d}",
        "Direction": "outbound",
        "CallType": "Local",
        "BillDate": "2026-11-01",
        "Date": "2026-11-20",
        "Time": f"{minute // 60:02d}:{minute % 60:02d}:00",
        "UTCDateTime": f"2026-11-19 {minute // 60:02d}:{minute % 60:02d}:00",
        "UTCOffset": "13",
        "AParty": "6491234567",
        "BParty": f"649{record_id:07d}",
        "BillNumber": "6491234567",
        "Seconds": "60",
        "NetworkSeconds": "55",
        "ConnectSeconds": "3",
        "Charge": "0.1150",
        "ChargeExcl": "0.1000",
        "FreeUnitsUsed": "0",
        "TextDesc1": "Local call",
        "TextDesc2": "",
        "ReleaseCause": "0016",
        "Status": "Ok",
        "ServiceType": "Std",
        "BillingGroup": "Default",
        "CallingGroup": "Default",
        "Profile": "Default",
    }


@asynccontextmanager
async def shuffled_history_feed(records: int) -> AsyncIterator[tuple[str, list[int]]]:
    """A feed of its own (not the simulator): the whole history after `fromid` in one answer, shuffled,
    with `fromid` read as inclusive (as some deployments document it). Yields its URL and the fromids asked."""
    asked: list[int] = []
    body_of = {n: orjson.dumps(php_row(n)) for n in range(1, records + 1)}

    async def billingfeed(request: web.Request) -> web.Response:
        form = await request.post()
        from_id = int(str(form["fromid"]))
        asked.append(from_id)
        ids = [n for n in body_of if n >= from_id]
        random.Random(from_id).shuffle(ids)
        return web.Response(body=b"[" + b",".join(body_of[n] for n in ids) + b"]", content_type="application/json")

    app = web.Application()
    app.router.add_post("/billingfeed.php", billingfeed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/billingfeed.php", asked
    finally:
        await runner.cleanup()


async def test_a_feed_of_its_own_sending_a_shuffled_history_with_inclusive_fromid_is_published_exactly_once(
    kafka: KafkaSettings, topics: TopicSettings, cleanup_topics: None, tmp_path: Path
) -> None:
    records = 25_000  # more than is sorted in memory
    async with shuffled_history_feed(records) as (url, asked):
        settings = parse_settings(
            {
                "feeds": [
                    {
                        "name": FEED,
                        "url": url,
                        "login": "81234567",
                        "password": PASSWORD,
                        "poll_interval_seconds": 0.2,
                        "max_rows_per_transaction": 700,
                    }
                ],
                "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "transactional_id_prefix": topics.events},
                "topics": topics.model_dump(),
                "http_port": 0,
                "tmp_dir": str(tmp_path),
            },
            {},
        )
        connector = Connector(settings)
        await connector.start()
        try:
            await wait_for(lambda: connector.pollers[0].last_id == records or connector.stopping, 180, "the offset")
            await wait_for(lambda: len(asked) >= 3 or connector.stopping, 30, "two more polls")
        finally:
            await connector.stop()
        await connector.wait()
    assert asked[:2] == [0, records], "the whole history in one answer, then only the inclusive re-send"
    result = await assert_clean(kafka, topics, IdRange(1, records))
    assert result.events == records and result.dead_letters == 0
