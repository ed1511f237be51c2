"""The metrics: every series at 0 from the start, bounded labels, what each report moves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import Settings, parse_settings
from cdr_stream.ops.health import FEED_STATES, FeedHealth
from cdr_stream.ops.metrics import (
    DEAD_LETTER_RULES,
    FAILURE_REASONS,
    REPLAY_OUTCOMES,
    UNREADABLE_FIELDS,
    ConnectorMetrics,
    ReplayMetrics,
)
from cdr_stream.pipeline.poller import ObserverGroup, PageReport

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
    metrics.poll_failed("east", reason="something new", message="m", retry_in=2, consecutive=3)
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
    assert _value(metrics, "cdr_stream_file_anomalies_total", feed="west", reason="other") == 0


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


def _raised_reasons() -> set[str]:
    """The reason of every FeedError (or subclass) and AnswerFormatError the package raises with a literal."""
    import ast
    from pathlib import Path

    import cdr_stream

    kinds = {"FeedError", "FeedAuthError", "SftpRefused", "AnswerFormatError"}
    reasons = set()
    for path in Path(cdr_stream.__file__).parent.rglob("*.py"):
        if "simulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds:
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    reasons.add(first.value)
    return reasons


def test_every_failure_reason_the_package_raises_has_its_own_label() -> None:
    raised = _raised_reasons()
    assert {"timeout", "auth", "invalid_json"} <= raised, "the scan finds the raises"
    assert raised - set(FAILURE_REASONS) == set()


def test_spill_bytes_shows_what_each_feeds_sort_takes_on_disk(tmp_path: Path) -> None:
    space = TempSpace(tmp_path)
    metrics = ConnectorMetrics(FEEDS, FeedHealth(_settings()), space=space)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 0
    space.reserve(FEEDS[0], 1_500)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 1_500
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[1]) == 0
    space.release(FEEDS[0], 1_500)
    assert _value(metrics, "cdr_stream_spill_bytes", feed=FEEDS[0]) == 0


def test_every_dead_letter_rule_records_py_names_has_its_own_label() -> None:
    import cdr_stream.records.processor as records

    rules = {value for name, value in vars(records).items() if name.startswith("RULE_")}
    assert {"missing_field", "invalid_value", "too_large"} <= rules, "the scan finds the rules"
    assert set(DEAD_LETTER_RULES) == rules | {"other"}


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
