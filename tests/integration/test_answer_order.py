"""A whole history in one shuffled answer, on the real broker: published whole, exactly once, also across
kill -9 while it is sorted on disk and while its chunks commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cdr_stream.answer_order import TempSpace
from cdr_stream.checker import IdRange
from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector
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
