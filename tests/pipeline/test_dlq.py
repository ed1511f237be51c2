"""Dead-letter pieces that need no broker: reading a dead letter, the summary of `dlq show` (and its
masking), the replay's selection, identity and stored progress, and one chunk put through today's rules."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import orjson
import pytest

from cdr_stream.errors import DeadLetterRule
from cdr_stream.kafka.state import is_offset_key
from cdr_stream.ops.checker import IdSet
from cdr_stream.ops.secrets import SecretMask
from cdr_stream.pipeline.dlq import (
    SKIP_NO_ID,
    SKIP_NOT_AN_OBJECT,
    SKIP_TRUNCATED,
    ChunkOutcome,
    DeadLetterSummary,
    ReplayIdentity,
    ReplayProgress,
    ReplaySelection,
    StoredDeadLetter,
    decode_dead_letter,
    latest_per_id,
    replay_chunk,
)
from cdr_stream.records.event import Event
from cdr_stream.records.processor import HEADER_FEED, MAX_RAW_BYTES, MalformedRow, RecordProcessor, Rejection
from tests.rows import feed_row

FEED = "east"
SECRET = "pa ss&wörd"
LATEST = datetime(2030, 1, 1, tzinfo=UTC)

#: The rule older versions applied to a row with neither AParty nor BParty; such rows are published now.
OLD_POINTER_ROW = "pointer_row"


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord a dead-letter reader uses."""

    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    offset: int = 0


def written(row_id: int | None, row: Any, rejection: Rejection, feed: str = FEED) -> Record:
    """A dead letter exactly as the connector writes it."""
    letter = RecordProcessor(feed)._dead_letter(row_id, row, rejection)
    return Record(letter.value, [(HEADER_FEED, feed.encode())])


POINTER = Rejection(OLD_POINTER_ROW, None, "pointer row (an older version's rule)")


def stored(row_id: int | None, row: Any = None, rejection: Rejection = POINTER, offset: int = 0) -> StoredDeadLetter:
    record = written(row_id, feed_row(row_id or 1) if row is None else row, rejection)
    record.offset = offset
    letter = decode_dead_letter(record, FEED)
    assert letter is not None
    return letter


def test_a_dead_letter_reads_back_as_the_connector_wrote_it() -> None:
    row = feed_row(42, BParty=None)
    letter = decode_dead_letter(written(42, row, POINTER), FEED)
    assert letter is not None
    assert (letter.id, letter.rule, letter.field, letter.raw, letter.truncated) == (42, "pointer_row", None, row, False)
    assert letter.rejected_at is not None and letter.rejected_at.endswith("Z")
    assert letter.skip_reason is None


def test_dead_letters_of_another_feed_are_not_read_and_an_unreadable_one_of_the_feed_is_named() -> None:
    assert decode_dead_letter(written(1, feed_row(1), POINTER, feed="west"), FEED) is None
    no_header = Record(orjson.dumps({"feed": "west", "id": 1, "rule": "x"}))
    assert decode_dead_letter(no_header, FEED) is None
    assert decode_dead_letter(Record(b"not json"), FEED) is None  # no header: not known to be the feed's
    with pytest.raises(ValueError, match="offset 7 of partition 2: not a dead letter"):
        decode_dead_letter(Record(b"not json", [(HEADER_FEED, FEED.encode())], partition=2, offset=7), FEED)


def test_what_cannot_be_replayed_says_why() -> None:
    unkeyed = decode_dead_letter(written(None, MalformedRow(["a", "b"], "2 values for 3 columns"), POINTER), FEED)
    assert unkeyed is not None and unkeyed.skip_reason == SKIP_NO_ID
    huge = feed_row(5, TextDesc2="x" * (MAX_RAW_BYTES + 10))
    truncated = decode_dead_letter(written(5, huge, POINTER), FEED)
    assert truncated is not None and truncated.truncated and truncated.skip_reason == SKIP_TRUNCATED
    listed = StoredDeadLetter(0, 0, 9, "x", None, "", ["a"], False, None)
    assert listed.skip_reason == SKIP_NOT_AN_OBJECT


def test_mask_hides_every_form_of_a_secret() -> None:
    text = f"a {SECRET} b {quote_plus(SECRET)} c {orjson.dumps(SECRET).decode()}"
    masked = SecretMask([SECRET])(text)
    assert masked == 'a *** b *** c "***"'


def test_the_summary_counts_by_rule_and_field_and_never_shows_a_secret() -> None:
    summary = DeadLetterSummary(FEED)
    missing = Rejection(DeadLetterRule.MISSING_FIELD, "UTCDateTime", "UTCDateTime: required field is missing")
    letters = [
        stored(7, {"ID": 7, "AccountCode": f"form {quote_plus(SECRET)}"}, offset=0),
        stored(3, offset=1),
        stored(9, {"ID": 9, "AccountCode": "a"}, missing, offset=2),
        stored(None, ["x"], Rejection("not_an_object", None, "row is not a JSON object"), offset=3),
    ]
    for letter in letters:
        summary.add(letter)
    text = summary.render([SECRET])
    assert summary.by_rule == Counter({("pointer_row", None): 2, ("missing_field", "UTCDateTime"): 1,
                                       ("not_an_object", None): 1})  # fmt: skip
    assert (summary.total, summary.without_id, summary.lowest_id, summary.highest_id) == (4, 1, 3, 9)
    assert text.splitlines()[0] == "feed east: 4 dead letter(s) (1 without an ID), IDs 3 to 9"
    assert "sample pointer_row (ID 7, partition 0 offset 0)" in text
    assert "sample missing_field (ID 9, partition 0 offset 2)" in text
    assert quote_plus(SECRET) not in text and "form ***" in text
    assert [sample.id for sample in summary.samples] == [7, 9, None]  # the first of each rule


def test_a_sample_is_masked_before_it_is_cut_so_no_part_of_a_secret_shows() -> None:
    prefix = '{"ID":7,"AccountCode":"a","TextDesc1":"'
    row = {"ID": 7, "AccountCode": "a", "TextDesc1": "z" * (290 - len(prefix)) + quote_plus(SECRET)}
    summary = DeadLetterSummary(FEED)
    summary.add(stored(7, row))
    text = summary.render([SECRET])
    assert "z***" in text and "pa+ss" not in text


def test_the_oldest_and_newest_go_by_rejected_at() -> None:
    summary = DeadLetterSummary(FEED)
    for number, stamp in enumerate(["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"]):
        letter = stored(number + 1)
        summary.add(StoredDeadLetter(**{**_fields(letter), "rejected_at": stamp}))
    assert summary.oldest is not None and summary.oldest.id == 2
    assert summary.newest is not None and summary.newest.id == 3
    assert "oldest: ID 2, rejected at 2026-01-01T00:00:00Z" in summary.render()


def _fields(letter: StoredDeadLetter) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in StoredDeadLetter.__slots__}


def test_an_empty_dead_letter_topic_says_so() -> None:
    assert DeadLetterSummary(FEED).render() == "feed east: 0 dead letter(s) (0 without an ID), IDs - to -"


@pytest.mark.parametrize(
    ("selection", "covered"),
    [
        (ReplaySelection(), {1, 5, 9, None}),
        (ReplaySelection(rule="pointer_row"), {1, 9, None}),
        (ReplaySelection(from_id=5), {5, 9}),
        (ReplaySelection(to_id=5), {1, 5}),
        (ReplaySelection("pointer_row", 2, 9), {9}),
    ],
)
def test_a_selection_takes_a_rule_and_an_id_range(selection: ReplaySelection, covered: set[int | None]) -> None:
    missing = Rejection(DeadLetterRule.MISSING_FIELD, "X", "x")
    letters = [stored(1), stored(5, rejection=missing), stored(9), stored(None, ["a"])]
    assert {letter.id for letter in letters if selection.covers(letter)} == covered


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"from_id": 5, "to_id": 4}, "--to-id 4 is below --from-id 5"), ({"from_id": 0}, "--from-id must be a positive")],
)
def test_a_bad_selection_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplaySelection(**kwargs)


def test_each_selection_has_a_state_key_of_its_own_apart_from_offsets_and_backfills() -> None:
    keys = {
        ReplayIdentity(FEED, selection, "cdr.events").state_key
        for selection in (ReplaySelection(), ReplaySelection("pointer_row"), ReplaySelection(None, 1, 9))
    }
    keys.add(ReplayIdentity(FEED, ReplaySelection(), "other.events").state_key)
    assert len(keys) == 4
    assert all(key.startswith(f"dlq-replay/{FEED}/") and not is_offset_key(key) for key in keys)
    identity = ReplayIdentity(FEED, ReplaySelection(), "cdr.events")
    assert identity.run_id(2) == f"dlq-{FEED}-{identity.digest}-2"


def test_progress_survives_its_encoding_and_adds_up() -> None:
    identity = ReplayIdentity(FEED, ReplaySelection("pointer_row", 1, 100), "cdr.events")
    progress = ReplayProgress("run-1", 1)
    outcome = ChunkOutcome(replayed=3, already_published=1, skipped=Counter({SKIP_TRUNCATED: 1}))
    outcome.still_failing[DeadLetterRule.INVALID_VALUE] = 2  # as replay_chunk counts them: by the rule itself
    progress = progress.add(outcome, 40).add(outcome, 55)
    assert (progress.last_id, progress.replayed, progress.already_published) == (55, 6, 2)
    assert (dict(progress.skipped), dict(progress.still_failing)) == ({"truncated": 2}, {"invalid_value": 4})
    assert ReplayProgress.decode(progress.encode(identity)) == progress
    stored_value = orjson.loads(progress.encode(identity))
    assert stored_value["dlq_replay"] == {"rule": "pointer_row", "from_id": 1, "to_id": 100}
    assert progress.summary() == (
        "replayed 6, already published 2, still failing 4 (invalid_value 4), skipped 2 (truncated 2)"
    )
    with pytest.raises(ValueError, match="not a dead-letter replay progress"):
        ReplayProgress.decode(b'{"run": "x"}')


def test_one_dead_letter_per_id_in_id_order_the_last_read_winning() -> None:
    first, again, other = stored(9, offset=1), stored(9, offset=5), stored(4, offset=3)
    assert latest_per_id([first, other, again, stored(None, ["x"])]) == [other, again]


def test_a_chunk_publishes_what_passes_today_once_and_leaves_the_rest() -> None:
    processor = RecordProcessor(FEED)
    no_time = feed_row(4)
    del no_time["UTCDateTime"]
    letters = [
        stored(2),
        stored(3),
        stored(4, no_time),
        stored(5, feed_row(5, TextDesc2="y" * (MAX_RAW_BYTES + 1))),
        stored(6, feed_row(6, UTCDateTime=(LATEST + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"))),
    ]
    published = IdSet([3])
    outcome = replay_chunk(letters, processor, published, LATEST)
    assert [event.id for event in outcome.chunk.events] == [2]
    assert isinstance(outcome.chunk.events[0], Event) and outcome.chunk.dead_letters == []
    assert (outcome.replayed, outcome.already_published) == (1, 1)
    assert outcome.still_failing == Counter({"missing_field": 1, "invalid_value": 1})
    assert outcome.skipped == Counter({SKIP_TRUNCATED: 1})
    assert 2 in published, "an ID published is remembered"
    again = replay_chunk(letters[:1], processor, published, LATEST)
    assert (again.replayed, again.already_published, again.chunk.events) == (0, 1, [])
