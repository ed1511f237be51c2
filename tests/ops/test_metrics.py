"""The metrics: every series at 0 from the start, bounded labels, what each report moves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Final

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import Settings, parse_settings
from cdr_stream.errors import DeadLetterRule, FailureReason, FileAnomaly
from cdr_stream.ops.health import FEED_STATES, FeedHealth
from cdr_stream.ops.metrics import (
    DEAD_LETTER_RULES,
    FAILURE_REASONS,
    FILE_ANOMALIES,
    REPLAY_OUTCOMES,
    UNREADABLE_FIELDS,
    ConnectorMetrics,
    ReplayMetrics,
)
from cdr_stream.pipeline.observer import ObserverGroup, PageReport
from cdr_stream.records.event import MAX_EVENT_BYTES
from cdr_stream.records.processor import MalformedRow, RecordProcessor
from tests.rows import feed_row

FEEDS = ("east", "west")


def _settings() -> Settings:
    feeds = [{"name": name, "url": "http://127.0.0.1:1/feed", "login": "l", "password": "p"} for name in FEEDS]
    return parse_settings({"feeds": feeds}, {})


def _metrics(now: float = 1_000.0) -> tuple[ConnectorMetrics, FeedHealth]:
    health = FeedHealth(_settings())
    return ConnectorMetrics(FEEDS, health, clock=lambda: now), health


def _samples(metrics: ConnectorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(metrics: ConnectorMetrics, name: str, **labels: str) -> float:
    return _samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_every_series_exists_at_zero_from_the_start() -> None:
    metrics, _ = _metrics()
    samples = _samples(metrics)
    ours = {key: value for key, value in samples.items() if key[0].startswith("cdr_stream_")}
    for feed in FEEDS:
        for name in (
            "cdr_stream_polls_total",
            "cdr_stream_records_fetched_total",
            "cdr_stream_records_published_total",
            "cdr_stream_transactions_committed_total",
            "cdr_stream_transactions_aborted_total",
            "cdr_stream_last_committed_id",
            "cdr_stream_newest_record_timestamp_seconds",
            "cdr_stream_last_commit_timestamp_seconds",
            "cdr_stream_last_successful_poll_timestamp_seconds",
            "cdr_stream_consecutive_failures",
            "cdr_stream_ready",
            "cdr_stream_spill_bytes",
            "cdr_stream_poll_duration_seconds_count",
            "cdr_stream_commit_duration_seconds_count",
        ):
            assert ours[(name, (("feed", feed),))] == 0, name
        for reason in FAILURE_REASONS:
            assert ours[("cdr_stream_poll_failures_total", (("feed", feed), ("reason", reason)))] == 0
        for rule in DEAD_LETTER_RULES:
            assert ours[("cdr_stream_records_dead_lettered_total", (("feed", feed), ("rule", rule)))] == 0
        for reason in ("already_seen", "duplicate_in_answer"):
            assert ours[("cdr_stream_records_dropped_total", (("feed", feed), ("reason", reason)))] == 0
        for reason in ("changed", "shrunk", "renamed"):
            assert ours[("cdr_stream_file_anomalies_total", (("feed", feed), ("reason", reason)))] == 0
        assert ours[("cdr_stream_files_unmatched_total", (("feed", feed),))] == 0
    build = [key for key in ours if key[0] == "cdr_stream_build_info"]
    assert len(build) == 1 and ours[build[0]] == 1
    assert any(name == "process_start_time_seconds" for name, _ in samples)
    assert not any(name.endswith("_created") for name, _ in samples)


def test_a_committed_page_moves_the_record_counters_and_freshness() -> None:
    metrics, _ = _metrics(now=5_000.0)
    page = PageReport(
        from_id=10,
        last_id=20,
        events=8,
        dead_letters=2,
        dropped_seen=3,
        dropped_duplicate=1,
        dead_letter_rules=Counter({"invalid_field": 2}),
        newest_call_ms=1_700_000_000_500,
        commit_seconds=0.02,
    )
    metrics.page_committed("east", page)
    assert _value(metrics, "cdr_stream_records_published_total", feed="east") == 8
    assert _value(metrics, "cdr_stream_records_dead_lettered_total", feed="east", rule="invalid_field") == 2
    assert _value(metrics, "cdr_stream_records_dropped_total", feed="east", reason="already_seen") == 3
    assert _value(metrics, "cdr_stream_records_dropped_total", feed="east", reason="duplicate_in_answer") == 1
    assert _value(metrics, "cdr_stream_transactions_committed_total", feed="east") == 1
    assert _value(metrics, "cdr_stream_commit_duration_seconds_count", feed="east") == 1
    assert _value(metrics, "cdr_stream_last_committed_id", feed="east") == 20
    assert _value(metrics, "cdr_stream_newest_record_timestamp_seconds", feed="east") == 1_700_000_000.5
    assert _value(metrics, "cdr_stream_last_commit_timestamp_seconds", feed="east") == 5_000.0
    assert _value(metrics, "cdr_stream_records_published_total", feed="west") == 0

    # An older call published later (an out-of-order answer) does not move freshness back.
    older = PageReport(20, 21, 1, 0, 0, 0, newest_call_ms=1_600_000_000_000, commit_seconds=0.01)
    metrics.page_committed("east", older)
    assert _value(metrics, "cdr_stream_newest_record_timestamp_seconds", feed="east") == 1_700_000_000.5


def test_a_page_of_only_dropped_rows_is_no_transaction() -> None:
    metrics, _ = _metrics()
    metrics.page_committed("east", PageReport(20, 20, 0, 0, 5, 0, committed=False))
    assert _value(metrics, "cdr_stream_records_dropped_total", feed="east", reason="already_seen") == 5
    assert _value(metrics, "cdr_stream_transactions_committed_total", feed="east") == 0
    assert _value(metrics, "cdr_stream_last_commit_timestamp_seconds", feed="east") == 0


def test_polls_failures_and_consecutive_failures() -> None:
    metrics, _ = _metrics(now=7_000.0)
    metrics.poll_failed("east", reason="http_5xx", message="m", retry_in=1, consecutive=1)
    metrics.poll_failed("east", reason="commit_timeout", message="m", retry_in=2, consecutive=2)
    metrics.poll_failed("east", reason=FailureReason.OTHER, message="m", retry_in=2, consecutive=3)
    assert _value(metrics, "cdr_stream_poll_failures_total", feed="east", reason="http_5xx") == 1
    assert _value(metrics, "cdr_stream_poll_failures_total", feed="east", reason="other") == 1
    assert _value(metrics, "cdr_stream_transactions_aborted_total", feed="east") == 1
    assert _value(metrics, "cdr_stream_consecutive_failures", feed="east") == 3
    assert _value(metrics, "cdr_stream_polls_total", feed="east") == 3

    metrics.poll_finished("east", seconds=0.3, rows=42, advanced=True)
    assert _value(metrics, "cdr_stream_consecutive_failures", feed="east") == 0
    assert _value(metrics, "cdr_stream_polls_total", feed="east") == 4
    assert _value(metrics, "cdr_stream_records_fetched_total", feed="east") == 42
    assert _value(metrics, "cdr_stream_poll_duration_seconds_count", feed="east") == 1
    assert _value(metrics, "cdr_stream_last_successful_poll_timestamp_seconds", feed="east") == 7_000.0


def test_ready_follows_the_health_of_each_feed() -> None:
    metrics, health = _metrics()
    health.offset_loaded("east", 5)
    metrics.offset_loaded("east", 5)
    assert _value(metrics, "cdr_stream_ready", feed="east") == 1
    assert _value(metrics, "cdr_stream_ready", feed="west") == 0
    assert _value(metrics, "cdr_stream_last_committed_id", feed="east") == 5
    health.poll_failed("east", reason="kafka", message="m", retry_in=1, consecutive=1)
    assert _value(metrics, "cdr_stream_ready", feed="east") == 0


def test_two_instances_keep_separate_registries() -> None:
    first, _ = _metrics()
    second, _ = _metrics()
    first.poll_finished("east", seconds=0.1, rows=3, advanced=True)
    assert _value(second, "cdr_stream_records_fetched_total", feed="east") == 0


def test_file_anomalies_are_counted_by_reason() -> None:
    metrics, _ = _metrics()
    metrics.file_anomaly("west", name="cdr_20261124.json", reason="renamed", message="m")
    metrics.file_anomaly("west", name="x", reason="odd", message="m")
    assert _value(metrics, "cdr_stream_file_anomalies_total", feed="west", reason="renamed") == 1
    assert _value(metrics, "cdr_stream_file_anomalies_total", feed="west", reason="other") == 1


def test_files_that_are_not_cdr_files_have_a_counter_of_their_own() -> None:
    metrics, _ = _metrics()
    metrics.file_anomaly("west", name="notes.txt", reason="not_cdr_file", message="m")
    assert _value(metrics, "cdr_stream_files_unmatched_total", feed="west") == 1
    assert all(_value(metrics, "cdr_stream_file_anomalies_total", feed="west", reason=r) == 0 for r in FILE_ANOMALIES)


@pytest.mark.parametrize("anomaly", [a for a in FileAnomaly if a is not FileAnomaly.NOT_CDR_FILE])
def test_every_file_anomaly_is_counted_under_its_own_label(anomaly: FileAnomaly) -> None:
    # Regression: files that changed or vanished in the middle of a read were counted as `other`.
    metrics, _ = _metrics()
    metrics.file_anomaly("west", name="cdr_20240405.csv", reason=anomaly, message="m")
    assert _value(metrics, "cdr_stream_file_anomalies_total", feed="west", reason=anomaly) == 1


def test_replay_metrics_exist_at_zero_and_count_outcomes_and_rules(tmp_path: Path) -> None:
    from cdr_stream.pipeline.dlq import ChunkOutcome, ReplayProgress

    metrics = ReplayMetrics("east")
    text = metrics.render().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for name in REPLAY_OUTCOMES:
        assert samples[("cdr_stream_dead_letters_replayed_total", (("feed", "east"), ("outcome", name)))] == 0
    for rule in DEAD_LETTER_RULES:
        assert samples[("cdr_stream_dead_letters_still_failing_total", (("feed", "east"), ("rule", rule)))] == 0
    outcome = ChunkOutcome(replayed=4, already_published=2, skipped=Counter({"truncated": 1}))
    outcome.still_failing.update({"invalid_value": 2, "a rule of a later version": 1})
    metrics.committed(ReplayProgress("r", 1), outcome)
    metrics.retrying("kafka", "m", 1.0, 1)
    path = tmp_path / "replay.prom"
    metrics.write(path)
    written = path.read_text()
    for line in (
        'cdr_stream_dead_letters_replayed_total{feed="east",outcome="replayed"} 4.0',
        'cdr_stream_dead_letters_replayed_total{feed="east",outcome="already_published"} 2.0',
        'cdr_stream_dead_letters_replayed_total{feed="east",outcome="still_failing"} 3.0',
        'cdr_stream_dead_letters_replayed_total{feed="east",outcome="skipped"} 1.0',
        'cdr_stream_dead_letters_still_failing_total{feed="east",rule="invalid_value"} 2.0',
        'cdr_stream_dead_letters_still_failing_total{feed="east",rule="other"} 1.0',
        'cdr_stream_dlq_replay_transactions_committed_total{feed="east"} 1.0',
        'cdr_stream_dlq_replay_retries_total{feed="east"} 1.0',
    ):
        assert line in written


def test_every_replay_outcome_the_replay_counts_has_its_label() -> None:
    from cdr_stream.pipeline.dlq import ChunkOutcome

    counted = {name for name in ChunkOutcome.__slots__ if name != "chunk"}
    assert counted == set(REPLAY_OUTCOMES)


def test_every_failure_reason_has_its_series_from_the_start() -> None:
    metrics, _ = _metrics()
    for reason in FailureReason:
        assert _value(metrics, "cdr_stream_poll_failures_total", feed="east", reason=reason) == 0
        assert _value(metrics, "cdr_stream_feed_stopped", feed="east", reason=reason) == 0


# One row for each rule: the processor's own verdicts, not a copy of its rule names.
RULE_EXAMPLES: Final[dict[DeadLetterRule, Any]] = {
    DeadLetterRule.MISSING_FIELD: {k: v for k, v in feed_row(4).items() if k != "ChargeExcl"},
    DeadLetterRule.INVALID_FIELD: feed_row(5, Charge="one dollar"),
    DeadLetterRule.INVALID_VALUE: feed_row(6, UTCDateTime="2024-02-31 10:00:00"),
    DeadLetterRule.NOT_AN_OBJECT: ["not", "a", "row"],
    DeadLetterRule.MALFORMED_ROW: MalformedRow(["7", "x"], "line 3: 2 values for the 26 columns of the header"),
    DeadLetterRule.TOO_LARGE: feed_row(8, Notes="x" * (MAX_EVENT_BYTES + 10)),
}


@pytest.mark.parametrize("rule", list(DeadLetterRule))
def test_every_dead_letter_rule_is_applied_by_the_processor_and_counted_under_its_label(rule: DeadLetterRule) -> None:
    chunk = RecordProcessor("east").process_chunk([RULE_EXAMPLES[rule]], 0)
    (letter,) = chunk.dead_letters
    assert letter.rule == rule
    metrics, _ = _metrics()
    assert _value(metrics, "cdr_stream_records_dead_lettered_total", feed="east", rule=rule) == 0
    metrics.page_committed("east", PageReport(0, 0, 0, 1, 0, 0, dead_letter_rules=Counter({letter.rule: 1})))
    assert _value(metrics, "cdr_stream_records_dead_lettered_total", feed="east", rule=rule) == 1


def test_spill_bytes_shows_what_each_feeds_sort_takes_on_disk(tmp_path: Path) -> None:
    space = TempSpace(tmp_path)
    metrics = ConnectorMetrics(FEEDS, FeedHealth(_settings()), space=space)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 0
    space.reserve(FEEDS[0], 1_500)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 1_500
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[1]) == 0
    space.release(FEEDS[0], 1_500)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 0


def test_unreadable_values_are_counted_by_field_from_zero() -> None:
    metrics, _ = _metrics()
    for feed in FEEDS:
        for name in UNREADABLE_FIELDS:
            assert _value(metrics, "cdr_stream_unreadable_fields_total", feed=feed, field=name) == 0
    assert len(UNREADABLE_FIELDS) == 23  # the 21 descriptive fields, extra columns, other
    page = PageReport(0, 5, 5, 0, 0, 0, unreadable_fields=Counter({"BillDate": 3, "UTCOffset": 1, "extra": 2}))
    metrics.page_committed("east", page)
    metrics.page_committed("east", PageReport(5, 6, 1, 0, 0, 0, unreadable_fields=Counter({"Surprise": 1})))
    assert _value(metrics, "cdr_stream_unreadable_fields_total", feed="east", field="BillDate") == 3
    assert _value(metrics, "cdr_stream_unreadable_fields_total", feed="east", field="UTCOffset") == 1
    assert _value(metrics, "cdr_stream_unreadable_fields_total", feed="east", field="extra") == 2
    assert _value(metrics, "cdr_stream_unreadable_fields_total", feed="east", field="other") == 1
    assert _value(metrics, "cdr_stream_unreadable_fields_total", feed="west", field="BillDate") == 0


def test_each_feed_is_in_exactly_one_state_and_a_stopped_feed_says_why() -> None:
    metrics, health = _metrics()

    def states(feed: str) -> dict[str, float]:
        return {state: _value(metrics, "cdr_stream_feed_state", feed=feed, state=state) for state in FEED_STATES}

    assert states("east") == {**dict.fromkeys(FEED_STATES, 0.0), "starting": 1.0}
    assert all(_value(metrics, "cdr_stream_feed_stopped", feed="east", reason=r) == 0 for r in FAILURE_REASONS)
    observers = ObserverGroup(metrics, health)
    observers.feed_failed("east", reason="auth", message="m", retry_in=60, consecutive=3)
    assert states("east") == {**dict.fromkeys(FEED_STATES, 0.0), "failed": 1.0}
    assert _value(metrics, "cdr_stream_poll_failures_total", feed="east", reason="auth") == 1
    assert _value(metrics, "cdr_stream_consecutive_failures", feed="east") == 3
    assert _value(metrics, "cdr_stream_feed_stopped", feed="east", reason="auth") == 0
    observers.feed_failed("west", reason="fenced", message="m", retry_in=None, consecutive=1)
    assert _value(metrics, "cdr_stream_feed_stopped", feed="west", reason="fenced") == 1
    observers.poll_finished("east", seconds=1, rows=0, advanced=False)
    assert states("east")["idle"] == 1 and states("east")["failed"] == 0
