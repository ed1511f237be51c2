"""The checker's judgement, fed records by hand (the broker side is in tests/integration/test_checker.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_stream.config import TopicSettings
from cdr_stream.errors import ExpectationError
from cdr_stream.ops.checker import IdRange, IdSet, OutOfOrder, Tally, as_ranges, holes, judge, parse_range, read_id_file
from cdr_stream.records.processor import HEADER_FEED, HEADER_REPLAY, HEADER_REPLAY_SOURCE, REPLAY_SOURCE_DEAD_LETTER

TOPICS = TopicSettings(events="ev", dead_letter="dlq", state="st")


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord the checker reads."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def event(record_id: int, account: str = "a1", partition: int = 0, feed: str = "f") -> Record:
    value = orjson.dumps({"feed": feed, "id": record_id, "account_code": account})
    return Record("ev", partition, account.encode(), value, [(HEADER_FEED, feed.encode())])


def letter(record_id: int | None, account: str | None = "a1", feed: str = "f") -> Record:
    value = orjson.dumps({"feed": feed, "id": record_id, "rule": "invalid_field"})
    return Record("dlq", 0, account.encode() if account else None, value, [(HEADER_FEED, feed.encode())])


def state(last_id: int | None, feed: str = "f") -> Record:
    value = None if last_id is None else orjson.dumps({"feed": feed, "last_id": last_id, "committed_at": None})
    return Record("st", 0, feed.encode(), value)


def tally_of(*records: Record, feed: str = "f") -> Tally:
    tally = Tally(feed, TOPICS)
    for record in records:
        tally.add(record)
    return tally


def test_id_set_adds_counts_and_iterates_in_order() -> None:
    rng = random.Random(4)
    ids = {rng.randrange(0, 3_000_000) for _ in range(5000)} | {0, 65535, 65536, 1 << 40}
    shuffled = list(ids)
    rng.shuffle(shuffled)
    bitmap = IdSet(shuffled)
    assert len(bitmap) == len(ids)
    assert list(bitmap) == sorted(ids)
    assert all(record_id in bitmap for record_id in ids)
    assert 1 not in bitmap or 1 in ids
    assert not bitmap.add(65536)
    assert bitmap.add(7) == (7 not in ids)
    assert "7" not in bitmap and -1 not in bitmap
    with pytest.raises(ValueError, match="negative"):
        bitmap.add(-3)


def test_runs_holes_and_ranges() -> None:
    bitmap = IdSet([1, 2, 3, 7, 8, 10, 65535, 65536, 65537])
    assert list(bitmap.runs()) == [IdRange(1, 3), IdRange(7, 8), IdRange(10, 10), IdRange(65535, 65537)]
    assert list(holes(bitmap.runs(), 1, 12)) == [IdRange(4, 6), IdRange(9, 9), IdRange(11, 12)]
    assert list(holes(bitmap.runs(), 0, 3)) == [IdRange(0, 0)]
    assert list(holes(iter([]), 5, 6)) == [IdRange(5, 6)]
    assert list(as_ranges([2, 3, 4, 9, 11, 12])) == [IdRange(2, 4), IdRange(9, 9), IdRange(11, 12)]
    assert [str(r) for r in as_ranges([5, 6, 8])] == ["5-6", "8"]
    assert bitmap.count_within(3, 65535) == 5


def test_expectations_from_text_and_files(tmp_path: Path) -> None:
    assert parse_range("1-5000") == IdRange(1, 5000)
    assert len(parse_range(" 7 - 7 ")) == 1
    for bad in ("5", "a-b", "9-2", "-3-4"):
        with pytest.raises(ExpectationError):
            parse_range(bad)
    ids = tmp_path / "ids.txt"
    ids.write_text("# expected\n3\n\n1\n2\n")
    assert list(read_id_file(ids)) == [1, 2, 3]
    ids.write_text("1\nx2\n")
    with pytest.raises(ExpectationError, match=r"ids.txt:2"):
        read_id_file(ids)
    with pytest.raises(ExpectationError, match="cannot read"):
        read_id_file(tmp_path / "nope.txt")


def test_clean_output_across_both_topics() -> None:
    tally = tally_of(event(1), letter(2), event(3, "a2", 1), letter(None), state(3))
    result = judge(tally, IdRange(1, 3))
    assert result.clean, result.summary()
    assert (result.events, result.dead_letters, result.dead_letters_without_id) == (2, 2, 1)
    assert result.distinct_ids == 3 and result.highest_id == 3 and result.state_last_id == 3
    assert "result: clean" in result.summary()


def test_a_duplicate_across_topics_is_reported() -> None:
    result = judge(tally_of(event(1), event(2), letter(2), event(2), state(2)), IdRange(1, 2))
    assert result.duplicates == {2: 3}
    assert result.duplicate_count == 1
    assert "1 ID(s) seen more than once: 2 x3" in result.summary()
    assert not result.clean


def test_missing_ids_against_a_range_and_against_a_set() -> None:
    tally = tally_of(event(1), event(2), event(5), event(9), state(9))
    by_range = judge(tally, IdRange(1, 6))
    assert by_range.missing == (IdRange(3, 4), IdRange(6, 6))
    assert by_range.missing_count == 3
    assert by_range.unexpected == 1  # ID 9 is outside the range: noted, not a problem
    assert "3 ID(s) missing: 3-4, 6" in by_range.summary()
    by_set = judge(tally, IdSet([2, 5, 7, 8, 9]))
    assert by_set.missing == (IdRange(7, 8),)
    assert by_set.unexpected == 1
    assert by_set.expected == 5


def test_without_expectation_gaps_are_possible_not_problems() -> None:
    result = judge(tally_of(event(10), event(11), event(14), state(14)), None)
    assert result.possible_gaps == (IdRange(12, 13),)
    assert result.clean
    assert "possible gaps" in result.summary() and "12-13" in result.summary()


def test_out_of_order_within_an_account_partition_and_topic() -> None:
    records = [
        event(1, "a1"),
        event(3, "a1"),
        event(2, "a2"),  # another account: its own order
        event(2, "a1"),  # lower than 3 in a1's partition: out of order
        event(4, "a1", partition=1),  # another partition: its own order
        letter(5, "a1"),
        letter(4, "a1"),  # out of order within the dead-letter topic
        letter(6, None),  # no key: no order to check
        state(6),
    ]
    result = judge(tally_of(*records), None)
    assert result.out_of_order == (OutOfOrder("ev", 0, "a1", 3, 2), OutOfOrder("dlq", 0, "a1", 5, 4))
    assert result.out_of_order_count == 2
    assert "account a1 (ev[0]): 2 after 3" in result.summary()


@pytest.mark.parametrize(
    ("records", "stored", "clean"),
    [
        ([event(1), event(2), state(1), state(2)], 2, True),
        ([event(1), event(2), state(1)], 1, False),  # behind: a restart would publish 2 again
        ([event(1), state(5)], 5, False),  # ahead: 2-5 were never published
        ([event(1)], None, False),  # nothing stored at all
        ([event(1), state(1), state(None)], None, False),  # a tombstone deletes it
        ([], None, True),  # nothing committed, nothing stored
    ],
)
def test_the_stored_offset_must_equal_the_highest_committed_id(
    records: list[Record], stored: int | None, clean: bool
) -> None:
    result = judge(tally_of(*records), None)
    assert result.state_last_id == stored
    assert result.state_ok is clean and result.clean is clean
    if not clean:
        assert "the stored offset is" in result.summary()


def test_other_feeds_are_ignored_and_broken_records_are_reported() -> None:
    records: list[Any] = [
        event(1),
        event(1, feed="other"),
        letter(1, feed="other"),
        state(99, feed="other"),
        Record("ev", 0, b"a1", b"not json", [(HEADER_FEED, b"f")]),
        Record("ev", 0, b"a1", orjson.dumps({"feed": "f", "id": "7"}), [(HEADER_FEED, b"f")]),
        Record("st", 0, b"f", b"{}"),
    ]
    result = judge(tally_of(*records), IdRange(1, 1))
    assert result.events == 2 and result.distinct_ids == 1
    assert result.unreadable == 3  # the bad JSON, the ID as text, the bad stored offset
    assert "3 record(s) of the feed could not be read" in result.summary()


def test_records_a_backfill_replayed_are_left_out_and_counted() -> None:
    replayed = [event(2), letter(50), event(1)]
    for record in replayed:
        record.headers.append((HEADER_REPLAY, b"f-abc-1"))
    result = judge(tally_of(event(1), event(2), state(2), *replayed), IdRange(1, 2))
    assert result.clean, result.summary()
    assert result.replayed == 3 and result.highest_id == 2
    assert "3 replayed record(s)" in result.summary()


def from_dead_letter(record_id: int, run: bytes = b"dlq-f-abc-1", account: str = "a1") -> Record:
    """An event `dlq replay` made of a dead letter."""
    record = event(record_id, account)
    record.headers += [(HEADER_REPLAY, run), (HEADER_REPLAY_SOURCE, REPLAY_SOURCE_DEAD_LETTER)]
    return record


@pytest.mark.parametrize("replay_first", [False, True])
def test_a_dead_letter_replayed_once_counts_once_whatever_the_read_order(replay_first: bool) -> None:
    # The replay comes after the live sequence, so its IDs are lower than the account's last live one.
    live = [event(1), letter(2), event(3), letter(4), event(5), state(5)]
    replays = [from_dead_letter(2), from_dead_letter(4)]
    records = [*replays, *live] if replay_first else [*live, *replays]
    result = judge(tally_of(*records), IdRange(1, 5))
    assert result.clean, result.summary()
    assert (result.distinct_ids, result.dead_letters_replayed, result.replayed) == (5, 2, 0)
    assert "2 event(s) replayed from dead letters" in result.summary()


def test_a_dead_letter_replayed_twice_or_over_a_live_event_is_a_duplicate() -> None:
    twice = judge(
        tally_of(event(1), letter(2), state(2), from_dead_letter(2), from_dead_letter(2, b"dlq-f-abc-2")), None
    )
    assert twice.duplicates == {2: 2} and not twice.clean
    over_live = judge(tally_of(event(1), event(2), state(2), from_dead_letter(2)), None)
    assert over_live.duplicates == {2: 2} and not over_live.clean


def test_a_replayed_dead_letter_whose_dead_letter_is_gone_still_counts_its_id() -> None:
    result = judge(tally_of(event(1), event(3), state(3), from_dead_letter(2)), IdRange(1, 3))
    assert result.clean and result.distinct_ids == 3, result.summary()


def test_a_backfill_replay_is_still_left_out_beside_a_dead_letter_replay() -> None:
    backfilled = event(2)
    backfilled.headers.append((HEADER_REPLAY, b"f-abc-1"))
    result = judge(tally_of(event(1), letter(2), state(2), backfilled, from_dead_letter(2)), IdRange(1, 2))
    assert result.clean, result.summary()
    assert (result.replayed, result.dead_letters_replayed) == (1, 1)
