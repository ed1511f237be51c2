"""Backfill on the real broker: a simulated day, kill -9 and resume, a topic of its own, an empty window."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from cdr_stream.config import KafkaSettings, Settings, TopicSettings
from cdr_stream.kafka.state import read_offsets, read_state
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.pipeline.backfill import Backfill, BackfillProgress, BackfillWindow, replay_topics
from cdr_stream.records.processor import HEADER_FEED, HEADER_REPLAY, HEADER_SCHEMA_VERSION, ProcessedChunk
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from cdr_stream.simulator.generator import NZ
from tests.integration.support import (
    FEED,
    PASSWORD,
    SETTLE_SECONDS,
    Published,
    delete_topics,
    read_published,
    settings_for,
    start_process,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]

# The day NZ daylight saving ended in 2023: 25 local hours, hour 2 twice. It lies inside the simulator's
# default window (the 7 days before 2023-04-06), so rows exist before and after it too.
DAY = date(2023, 4, 2)
LIVE_OFFSET = 777


def ids_of_day(sim: FeedSimulator, day: date) -> set[int]:
    return {i for i in sim.ids() if datetime.fromtimestamp(sim.generator.timestamp(i), NZ).date() == day}


async def set_live_offset(settings: Settings) -> None:
    """The feed's own offset, as `state set` stores it: a backfill must leave it alone."""
    await prepare_topics(settings.kafka, settings.topics)
    writer = TransactionalWriter(settings.kafka, settings.topics, FEED)
    await writer.start()
    try:
        await writer.commit(ProcessedChunk(), LIVE_OFFSET)
    finally:
        await writer.stop()


async def stored_progress(kafka: KafkaSettings, topics: TopicSettings) -> BackfillProgress | None:
    try:
        values = await read_state(
            kafka, topics.state, lambda key: key.startswith("backfill/"), timeout=10, settle_seconds=SETTLE_SECONDS
        )
    except Exception:  # the topic may not exist yet while the process starts
        return None
    return BackfillProgress.decode(next(iter(values.values()))) if values else None


def replay_runs(published: Published) -> set[bytes]:
    return {dict(record.headers)[HEADER_REPLAY] for record in [*published.events, *published.dead_letters]}


async def test_a_day_killed_with_kill_9_and_run_again_has_no_duplicate_no_gap_and_keeps_the_live_offset(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill -9 seed: {seed}")  # replays the same kill moments
    rng = random.Random(seed)
    config = SimulatorConfig(password=PASSWORD, records=30_000, page_size=120, invalid_rate=0.01, latency_ms=15)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, max_rows_per_transaction=50)
        await set_live_offset(settings)
        path = write_config(tmp_path / "c.toml", settings)
        log = tmp_path / "backfill.log"
        command = ("backfill", "--config", str(path), "--feed", FEED, "--date", str(DAY))
        done_at_kill: list[int] = []
        for kill in range(2):
            process = start_process(*command, log=log)
            deadline = time.monotonic() + 90
            while (progress := await stored_progress(kafka, topics)) is None or progress.done < 4 * (kill + 1):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the backfill made no progress"
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # lands inside a transaction most of the time
            process.kill()
            await asyncio.to_thread(process.wait, 10)
            done_at_kill.append(progress.done)
        assert (await stored_progress(kafka, topics)) is not None
        process = start_process(*command, log=log)
        assert await asyncio.to_thread(process.wait, 120) == 0, log.read_text()[-3000:]
        expected = ids_of_day(sim, DAY)
        invalid = {i for i in expected if sim.is_invalid(i)}

    final = await stored_progress(kafka, topics)
    assert final is not None and final.finished and final.done == 24
    assert done_at_kill[-1] < 24, "the day was over before the last kill"
    published = await read_published(kafka, topics)
    ids = published.all_ids()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} IDs published twice"
    assert set(ids) == expected, f"missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}"
    assert set(published.dead_letter_ids()) == invalid and invalid
    assert (final.events, final.dead_letters) == (len(expected) - len(invalid), len(invalid))
    assert replay_runs(published) == {final.run.encode()}
    for record in published.events:
        headers = dict(record.headers)
        assert (headers[HEADER_FEED], headers[HEADER_SCHEMA_VERSION]) == (FEED.encode(), b"2")
    assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id == LIVE_OFFSET
    assert log.read_text().count("resuming with") == 2, "each run after a kill resumes the stored progress"


async def test_a_topic_of_its_own_an_empty_window_a_finished_run_and_a_restart(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    replay = f"{topics.events}.replay"
    config = SimulatorConfig(password=PASSWORD, records=8000, page_size=500, invalid_rate=0.02)
    try:
        async with FeedSimulator(config) as sim:
            # Pipe answers: a backfill reads every format the feed may be configured for.
            settings = settings_for(sim, kafka, topics, max_rows_per_transaction=400, format="pipe")
            await set_live_offset(settings)
            run_topics = replay_topics(settings.topics, replay)
            feed = settings.feeds[0]

            async def backfill(window: BackfillWindow, *, restart: bool = False) -> BackfillProgress:
                from cdr_stream.ops.progress import BackfillReport

                run = Backfill(settings, feed, window, BackfillReport(), topics=run_topics, restart=restart)
                return await run.run()

            day = BackfillWindow(DAY, DAY)
            first = await backfill(day)
            again = await backfill(day)
            empty = await backfill(BackfillWindow(date(2023, 1, 1), date(2023, 1, 1)))
            restarted = await backfill(day, restart=True)
            expected = ids_of_day(sim, DAY)

        on_replay = await read_published(kafka, run_topics)
        on_events = await read_published(kafka, topics)
        live = (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id
        progress_records = await read_state(
            kafka, topics.state, lambda key: key.startswith("backfill/"), settle_seconds=SETTLE_SECONDS
        )
    finally:
        await delete_topics(kafka, topics, replay)

    assert on_events.events == [], "a backfill to its own topic published to the events topic"
    assert first.finished and first.rows == len(expected)
    assert again == first, "running a finished run again must send nothing"
    assert (empty.finished, empty.hours, empty.rows) == (True, 24, 0)
    assert restarted.run != first.run and restarted.generation == 2 and restarted.rows == len(expected)
    ids = on_replay.all_ids()
    assert sorted(ids) == sorted([*expected, *expected]), "the day twice: once per run, never more"
    assert replay_runs(on_replay) == {first.run.encode(), restarted.run.encode()}
    assert live == LIVE_OFFSET
    # Each window's progress is its own record in the state topic, next to the feed's offset.
    assert len(progress_records) == 2
    assert {orjson.loads(value)["topic"] for value in progress_records.values()} == {replay}
