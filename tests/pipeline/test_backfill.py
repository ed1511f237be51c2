"""Backfill pieces that need no broker: dates, windows, run identity, and the stored progress."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cdr_stream.config import TopicSettings
from cdr_stream.errors import ConfigError
from cdr_stream.kafka.state import StoredOffset, is_offset_key
from cdr_stream.pipeline.backfill import (
    BackfillProgress,
    BackfillWindow,
    RunIdentity,
    parse_day,
    parse_hour,
    replay_topics,
)
from cdr_stream.records.processor import ProcessedChunk
from cdr_stream.sources.http import FeedWindow

DAY = date(2023, 4, 2)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2023-02-30", "day is out of range"),
        ("2023/04/02", "YYYY-MM-DD"),
        ("20230402", "YYYY-MM-DD"),
        ("", "YYYY-MM-DD"),
    ],
)
def test_a_bad_date_is_named_with_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_day(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text", ["24", "-1", "x", "", "1.5"])
def test_an_hour_is_0_to_23(text: str) -> None:
    with pytest.raises(ValueError, match="0 to 23"):
        parse_hour(text)
    assert [parse_hour(str(hour)) for hour in (0, 23)] == [0, 23]


def test_a_window_is_asked_hour_by_hour() -> None:
    assert BackfillWindow(DAY, DAY).hours() == [FeedWindow(DAY, hour) for hour in range(24)]
    three_days = BackfillWindow(DAY, date(2023, 4, 4)).hours()
    assert len(three_days) == 72
    assert (three_days[24], three_days[-1]) == (FeedWindow(date(2023, 4, 3), 0), FeedWindow(date(2023, 4, 4), 23))
    assert BackfillWindow(DAY, DAY, 5).hours() == [FeedWindow(DAY, 5)]


@pytest.mark.parametrize(
    ("last", "hour", "words"),
    [(date(2023, 4, 1), None, "--to-date 2023-04-01 is before --date 2023-04-02"), (date(2023, 4, 3), 5, "--hour")],
)
def test_a_window_that_makes_no_sense_is_refused(last: date, hour: int | None, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        BackfillWindow(DAY, last, hour)


def test_a_window_not_begun_anywhere_is_refused_and_one_maybe_not_over_draws_a_warning() -> None:
    now = datetime(2023, 4, 2, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="has not begun anywhere"):
        BackfillWindow(date(2023, 4, 4), date(2023, 4, 4)).check_against(now)
    # 2023-04-03 has begun at UTC+14 (it is 02:00 there): allowed, with a warning.
    warning = BackfillWindow(date(2023, 4, 3), date(2023, 4, 3)).check_against(now)
    assert warning is not None and "may not be over" in warning
    assert BackfillWindow(DAY, DAY, 10).check_against(now) is not None  # over at UTC+14, not yet at UTC-12
    assert BackfillWindow(date(2023, 4, 1), date(2023, 4, 1)).check_against(now) is None


def test_the_same_command_is_the_same_run_and_its_key_is_never_a_feed_offset() -> None:
    run = RunIdentity("hero-nz", BackfillWindow(DAY, DAY), "cdr.events")
    assert run == RunIdentity("hero-nz", BackfillWindow(DAY, DAY), "cdr.events")
    others = [
        RunIdentity("hero-uk", BackfillWindow(DAY, DAY), "cdr.events"),
        RunIdentity("hero-nz", BackfillWindow(DAY, DAY, 0), "cdr.events"),
        RunIdentity("hero-nz", BackfillWindow(DAY, date(2023, 4, 3)), "cdr.events"),
        RunIdentity("hero-nz", BackfillWindow(DAY, DAY), "cdr.replay"),
    ]
    assert len({run.digest, *(other.digest for other in others)}) == 5
    assert run.state_key == f"backfill/hero-nz/{run.digest}"
    assert not is_offset_key(run.state_key)
    assert is_offset_key("hero-nz")
    assert run.id_suffix == f"backfill-{run.digest}"
    assert run.run_id(2) == f"hero-nz-{run.digest}-2"


def test_progress_survives_its_round_trip_and_old_offset_readers_can_still_decode_it() -> None:
    run = RunIdentity("f", BackfillWindow(DAY, DAY), "t")
    progress = BackfillProgress("f-x-1", 1, 24, 0, 0).committed(120, ProcessedChunk())
    progress = progress.hour_done(0).committed(250, ProcessedChunk())
    encoded = progress.encode(run)
    assert BackfillProgress.decode(encoded) == progress
    assert (progress.done, progress.last_id, progress.finished) == (1, 250, False)
    # A reader that predates backfill keys still sees a valid offset record, not garbage.
    assert StoredOffset.decode(encoded).last_id == 250
    with pytest.raises(ValueError, match="not a backfill progress record"):
        BackfillProgress.decode(b'{"feed": "f", "last_id": 3}')


def test_a_replay_topic_replaces_only_the_events_topic_and_is_checked() -> None:
    topics = TopicSettings()
    assert replay_topics(topics, None) == topics
    assert replay_topics(topics, "cdr.replay").model_dump() == {**topics.model_dump(), "events": "cdr.replay"}
    for bad in ("has space", topics.state):
        with pytest.raises(ConfigError, match="--topic"):
            replay_topics(topics, bad)
