"""The checker against the real broker: clean output is clean, and each planted problem is reported."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from cdr_stream.config import KafkaSettings, Settings, TopicSettings
from cdr_stream.kafka.clients import connection_options
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.ops.checker import IdRange, IdSet, check_feed
from cdr_stream.records.processor import HEADER_FEED, RecordProcessor
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import FEED, PASSWORD, run_until_caught_up, settings_for, write_config
from tests.rows import feed_row

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


class Planter:
    """Writes events, dead letters and offsets by hand, exactly where a test wants them."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.kafka = kafka
        self.topics = topics
        self._processor = RecordProcessor(FEED)

    async def __aenter__(self) -> Planter:
        self._producer = AIOKafkaProducer(enable_idempotence=True, **connection_options(self.kafka))
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def events(self, ids: list[int], account: str, partition: int = 0) -> None:
        rows = [feed_row(record_id, AccountCode=account) for record_id in ids]
        # One row per chunk keeps the given order (a chunk sorts its rows).
        for row in rows:
            (event,) = self._processor.process_chunk([row], 0).events
            await self._producer.send_and_wait(
                self.topics.events, event.value, key=event.key, partition=partition, headers=[(HEADER_FEED, b"sim")]
            )

    async def dead_letter(self, record_id: int, account: str) -> None:
        row = feed_row(record_id, AccountCode=account, Charge="x")
        (letter,) = self._processor.process_chunk([row], 0).dead_letters
        await self._producer.send_and_wait(self.topics.dead_letter, letter.value, key=letter.key)

    async def offset(self, last_id: int) -> None:
        await self._producer.send_and_wait(self.topics.state, StoredOffset.now(FEED, last_id).encode(), key=b"sim")


async def plant_a_clean_feed(kafka: KafkaSettings, topics: TopicSettings) -> Planter:
    """IDs 1-20 over two accounts in two partitions, 10 and 11 dead-lettered, offset 20."""
    await prepare_topics(kafka, topics)
    planter = Planter(kafka, topics)
    async with planter:
        await planter.events([1, 3, 5, 7, 9, 13, 15, 17, 19], "alpha", partition=0)
        await planter.events([2, 4, 6, 8, 12, 14, 16, 18, 20], "beta", partition=1)
        await planter.dead_letter(10, "beta")
        await planter.dead_letter(11, "alpha")
        await planter.offset(20)
    return planter


async def test_a_clean_feed_is_clean(kafka: KafkaSettings, topics: TopicSettings) -> None:
    await plant_a_clean_feed(kafka, topics)
    result = await check_feed(kafka, topics, FEED, IdRange(1, 20))
    assert result.clean, result.summary()
    assert (result.events, result.dead_letters, result.distinct_ids) == (18, 2, 20)
    assert (result.highest_id, result.state_last_id) == (20, 20)


async def test_planted_duplicate_gap_disorder_and_wrong_offset_are_all_reported(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    planter = await plant_a_clean_feed(kafka, topics)
    async with planter:
        await planter.dead_letter(7, "gamma")  # 7 was published; now dead-lettered too
        await planter.events([23, 22], "alpha")  # the wrong way round, and 21 never comes
        await planter.offset(21)  # the highest committed ID is 23
    result = await check_feed(kafka, topics, FEED, IdRange(1, 23))
    assert result.duplicates == {7: 2}
    assert result.missing == (IdRange(21, 21),)
    assert [(o.account, o.before, o.after) for o in result.out_of_order] == [("alpha", 23, 22)]
    assert (result.state_last_id, result.highest_id, result.state_ok) == (21, 23, False)
    summary = result.summary()
    for line in (
        "1 ID(s) missing: 21",
        "1 ID(s) seen more than once: 7 x2",
        "1 ID(s) out of order within an account: account alpha",
        "the stored offset is 21 but the highest committed ID is 23",
    ):
        assert line in summary, summary

    without = await check_feed(kafka, topics, FEED)
    assert without.possible_gaps == (IdRange(21, 21),) and not without.missing
    assert without.duplicate_count == 1 and without.out_of_order_count == 1 and not without.state_ok

    by_set = await check_feed(kafka, topics, FEED, IdSet([*range(1, 21), 22, 23, 24]))
    assert by_set.missing == (IdRange(24, 24),)


async def test_a_real_connector_run_is_clean(kafka: KafkaSettings, topics: TopicSettings) -> None:
    config = SimulatorConfig(password=PASSWORD, records=2500, page_size=600, invalid_rate=0.02, duplicate_rate=0.5)
    async with FeedSimulator(config) as sim:
        await run_until_caught_up(settings_for(sim, kafka, topics, max_rows_per_transaction=200), sim)
    result = await check_feed(kafka, topics, FEED, IdRange(1, 2500))
    assert result.clean, result.summary()
    assert result.dead_letters > 0 and result.events + result.dead_letters == 2500


def verify(settings: Settings, tmp_path: Path, *expect: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path / "c.toml", settings)
    return subprocess.run(
        [sys.executable, "-m", "cdr_stream.cli", "verify", "--config", str(config), "--feed", FEED, *expect],
        capture_output=True,
        text=True,
        env={"CDR_TEST_FEED_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )


async def test_the_verify_command_exits_0_when_clean_and_1_on_problems(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=10)) as sim:
        settings = settings_for(sim, kafka, topics)
    planter = await plant_a_clean_feed(kafka, topics)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in range(1, 21)) + "\n")
    for expect in ([], ["--expect-range", "1-20"], ["--expect-ids", str(ids)]):
        clean = await asyncio.to_thread(verify, settings, tmp_path, *expect)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "result: clean" in clean.stdout

    async with planter:
        await planter.events([20], "beta", partition=1)
    found = await asyncio.to_thread(verify, settings, tmp_path, "--expect-range", "1-25")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "PROBLEM: 5 ID(s) missing: 21-25" in found.stdout
    assert "PROBLEM: 1 ID(s) seen more than once: 20 x2" in found.stdout

    bad = await asyncio.to_thread(verify, settings, tmp_path, "--expect-range", "9-1")
    assert bad.returncode == 2 and "above the last" in bad.stderr
