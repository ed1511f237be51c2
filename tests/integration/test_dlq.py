"""Dead-letter replay on the real broker: dead letters an older version wrote, `dlq replay` as a process
killed with kill -9 and run again, a second replay, `dlq show`, and the verdict of the checker."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_stream.config import KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.errors import DeadLetterRule
from cdr_stream.kafka.state import read_offsets, read_state
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.pipeline.dlq import ReplayProgress
from cdr_stream.records.processor import (
    HEADER_FEED,
    HEADER_REPLAY,
    HEADER_REPLAY_SOURCE,
    ProcessedChunk,
    RecordProcessor,
    Rejection,
)
from tests.integration.support import (
    FEED,
    PASSWORD,
    SETTLE_SECONDS,
    Published,
    check,
    read_published,
    start_process,
    write_config,
)
from tests.rows import feed_row

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]

LIVE_ROWS = 900
OLD_CHUNK = 100

#: The rule older versions applied to a row with neither AParty nor BParty; such rows are published now.
OLD_POINTER_ROW = "pointer_row"


def settings_of(kafka: KafkaSettings, topics: TopicSettings) -> Settings:
    feed = {"name": FEED, "url": "http://127.0.0.1:9/billingfeed.php", "login": "l", "password": PASSWORD}
    return parse_settings(
        {
            "feeds": [feed],
            "kafka": {
                "bootstrap_servers": kafka.bootstrap_servers,
                "commit_timeout_seconds": 20,
                "transactional_id_prefix": topics.events.split(".")[0],
            },
            "topics": topics.model_dump(),
        },
        {},
    )


def old_version_chunks() -> tuple[list[ProcessedChunk], set[int], Counter[str]]:
    """What an older connector committed for IDs 1..LIVE_ROWS: most rows as events; every third row as a
    dead letter of rule pointer_row (a rule today's version no longer applies to these rows); rows today's
    rules refuse too (no UTCDateTime, a bad Charge) as their dead letters; a row that was no object.

    Returns the chunks, the IDs a replay must publish, and the rules today's version refuses the others by.
    """
    processor = RecordProcessor(FEED)
    chunks: list[ProcessedChunk] = []
    acceptable: set[int] = set()
    failing: Counter[str] = Counter()
    for first in range(1, LIVE_ROWS + 1, OLD_CHUNK):
        chunk = ProcessedChunk()
        for row_id in range(first, first + OLD_CHUNK):
            account = f"8123456{row_id % 4}"
            if row_id % 50 in (0, 1):
                row = feed_row(row_id, AccountCode=account, Charge="twelve")
                if row_id % 50 == 0:
                    del row["UTCDateTime"]
                rejection = processor.normalize(row_id, row)
                assert isinstance(rejection, Rejection)
                failing[rejection.rule] += 1
                chunk.dead_letters.append(processor._dead_letter(row_id, row, rejection))
            elif row_id % 3 == 0:
                row = feed_row(row_id, AccountCode=account, BParty=None, TextDesc1=f"old rule {row_id}")
                acceptable.add(row_id)
                old = Rejection(OLD_POINTER_ROW, None, "pointer row: no BParty (as an older version judged)")
                chunk.dead_letters.append(processor._dead_letter(row_id, row, old))
            else:
                event = processor.normalize(row_id, feed_row(row_id, AccountCode=account))
                assert not isinstance(event, Rejection)
                chunk.events.append(event)
        chunks.append(chunk)
    not_an_object = Rejection(DeadLetterRule.NOT_AN_OBJECT, None, "row is not a JSON object")
    chunks[0].dead_letters.append(processor._dead_letter(None, ["not", "an", "object"], not_an_object))
    assert len(failing) == 2 and sum(failing.values()) == 36
    return chunks, acceptable, failing


async def publish_as_old_version(settings: Settings) -> tuple[set[int], Counter[str]]:
    """The older version's transactions, with the feed's own transactional id and its offset."""
    await prepare_topics(settings.kafka, settings.topics)
    chunks, acceptable, failing = old_version_chunks()
    writer = TransactionalWriter(settings.kafka, settings.topics, FEED)
    await writer.start()
    try:
        for number, chunk in enumerate(chunks, 1):
            await writer.commit(chunk, number * OLD_CHUNK)
    finally:
        await writer.stop()
    return acceptable, failing


async def stored_progress(kafka: KafkaSettings, topics: TopicSettings) -> ReplayProgress | None:
    try:
        values = await read_state(
            kafka, topics.state, lambda key: key.startswith("dlq-replay/"), timeout=10, settle_seconds=SETTLE_SECONDS
        )
    except Exception:  # read while the process starts
        return None
    return ReplayProgress.decode(next(iter(values.values()))) if values else None


def replayed(published: Published) -> list[Any]:
    return [record for record in published.events if HEADER_REPLAY in dict(record.headers)]


async def test_dead_letters_todays_rules_accept_are_published_once_through_kill_9_and_a_second_replay(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill -9 seed: {seed}")
    rng = random.Random(seed)
    settings = settings_of(kafka, topics)
    acceptable, failing = await publish_as_old_version(settings)
    before = await check(kafka, topics)
    assert before.clean, before.summary()
    path = write_config(tmp_path / "c.toml", settings)
    log = tmp_path / "replay.log"
    command = ("dlq", "replay", "--config", str(path), "--feed", FEED, "--chunk-size", "3")

    kills: list[int] = []
    for _ in range(2):
        # Each process is killed only once it has committed chunks of its own.
        stored = await stored_progress(kafka, topics)
        floor = stored.last_id if stored is not None else 0
        process = start_process(*command, log=log)
        deadline = time.monotonic() + 90
        while (progress := await stored_progress(kafka, topics)) is None or progress.last_id <= floor + 60:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the replay made no progress"
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        kills.append(progress.last_id)
    middle = await stored_progress(kafka, topics)
    assert middle is not None and not middle.finished, "the replay was over before the last kill"
    assert kills[0] < kills[1] <= middle.last_id, "the second process committed before it was killed"
    process = start_process(*command, log=log)
    assert await asyncio.to_thread(process.wait, 120) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("resuming dead-letter replay") == 2, "each run after a kill resumes the stored progress"
    final = await stored_progress(kafka, topics)
    assert final is not None and final.finished
    assert final.replayed + final.already_published == len(acceptable)
    assert dict(final.still_failing) == dict(failing)
    assert dict(final.skipped) == {"no_id": 1}

    published = await read_published(kafka, topics)
    replays = replayed(published)
    replay_ids = [orjson.loads(record.value)["id"] for record in replays]
    assert sorted(replay_ids) == sorted(acceptable), "each acceptable ID published exactly once"
    event_ids = published.event_ids()
    assert len(event_ids) == len(set(event_ids)), "an ID has two events"
    assert {dict(record.headers)[HEADER_REPLAY] for record in replays} == {final.run.encode()}
    for record in replays:
        headers = dict(record.headers)
        assert (headers[HEADER_FEED], headers[HEADER_REPLAY_SOURCE]) == (FEED.encode(), b"dead-letter")
        assert orjson.loads(record.value)["text_desc1"].startswith("old rule")
    dead_letter_ids = published.dead_letter_ids()
    assert len(dead_letter_ids) == len(acceptable) + 36 + 1, "a dead letter was added or removed"
    assert (await read_offsets(kafka, topics.state, settle_seconds=SETTLE_SECONDS))[FEED].last_id == LIVE_ROWS, (
        "the live offset was touched"
    )

    again = start_process(*command, log=tmp_path / "again.log")
    assert await asyncio.to_thread(again.wait, 120) == 0, (tmp_path / "again.log").read_text()[-3000:]
    second = await stored_progress(kafka, topics)
    assert second is not None and second.finished and second.generation == final.generation + 1
    assert (second.replayed, second.already_published) == (0, len(acceptable))
    assert f"replayed 0, already published {len(acceptable)}," in (tmp_path / "again.log").read_text()
    assert len((await read_published(kafka, topics)).events) == len(published.events), "a second replay published"

    result = await check(kafka, topics)
    assert result.clean, result.summary()
    assert result.dead_letters_replayed == len(acceptable)
    assert result.distinct_ids == LIVE_ROWS and result.highest_id == LIVE_ROWS


async def test_a_replay_of_one_rule_and_range_and_dlq_show(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    settings = settings_of(kafka, topics)
    acceptable, failing = await publish_as_old_version(settings)
    path = write_config(tmp_path / "c.toml", settings)
    show_log = tmp_path / "show.log"
    show = start_process("dlq", "show", "--config", str(path), "--feed", FEED, log=show_log)
    assert await asyncio.to_thread(show.wait, 60) == 0, show_log.read_text()[-3000:]
    shown = show_log.read_text()
    total = len(acceptable) + sum(failing.values()) + 1
    assert f"feed sim: {total} dead letter(s) (1 without an ID), IDs 1 to 900" in shown
    assert re.search(rf"pointer_row +- +{len(acceptable)}\n", shown), shown
    assert re.search(r"missing_field +UTCDateTime +18\n", shown), shown
    assert re.search(r"oldest: ID \d+, rejected at \d{4}-\d\d-\d\dT", shown), shown
    assert "sample pointer_row (ID 3, " in shown and "sample not_an_object (ID -, " in shown
    assert PASSWORD not in shown

    log = tmp_path / "replay.log"
    ranged = ("dlq", "replay", "--config", str(path), "--feed", FEED, "--rule", "pointer_row")
    prom = tmp_path / "replay.prom"
    # The live connector's writer (the feed's own transactional id) is not fenced by a replay.
    live = TransactionalWriter(settings.kafka, settings.topics, FEED)
    await live.start()
    try:
        process = start_process(*ranged, "--from-id", "100", "--to-id", "199", "--metrics-file", str(prom), log=log)
        assert await asyncio.to_thread(process.wait, 60) == 0, log.read_text()[-3000:]
        await live.commit(ProcessedChunk(), LIVE_ROWS)
    finally:
        await live.stop()
    in_range = {i for i in acceptable if 100 <= i <= 199}
    assert f"replayed {len(in_range)}, already published 0, still failing 0, skipped 0" in log.read_text()
    ids = [orjson.loads(record.value)["id"] for record in replayed(await read_published(kafka, topics))]
    assert sorted(ids) == sorted(in_range)
    metrics = prom.read_text()
    assert f'cdr_stream_dead_letters_replayed_total{{feed="sim",outcome="replayed"}} {len(in_range)}.0' in metrics

    # A wider run: the range replayed before counts as already published; the rest is replayed.
    process = start_process(*ranged, log=log)
    assert await asyncio.to_thread(process.wait, 60) == 0, log.read_text()[-3000:]
    rest = len(acceptable) - len(in_range)
    assert f"replayed {rest}, already published {len(in_range)}, still failing 0" in log.read_text()
    result = await check(kafka, topics)
    assert result.clean and result.dead_letters_replayed == len(acceptable), result.summary()
