"""Liveness and readiness, learnt from the poll loop's reports."""

from __future__ import annotations

from cdr_stream.config import Settings, parse_settings
from cdr_stream.ops.health import FEED_STATES, MIN_WEDGE_SECONDS, FeedHealth, wedge_limit
from cdr_stream.pipeline.observer import PageReport


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _settings(**feed: object) -> Settings:
    values = {"name": "east", "url": "http://127.0.0.1:1/feed", "login": "l", "password": "p", **feed}
    return parse_settings({"feeds": [values]}, {})


def _two_feeds(**top: object) -> Settings:
    feeds = [{"name": name, "url": "http://127.0.0.1:1/feed", "login": "l", "password": "p"} for name in ("a", "b")]
    return parse_settings({"feeds": feeds, **top}, {})


def test_ready_after_the_offset_is_loaded_and_not_while_kafka_is_rebuilt() -> None:
    health = FeedHealth(_settings())
    assert not health.readiness().ok
    health.offset_loaded("east", 41)
    verdict = health.readiness()
    assert verdict.ok and verdict.detail["east"] == {"ready": True, "last_id": 41, "state": "starting"}
    health.poll_failed("east", reason="http_5xx", message="m", retry_in=1, consecutive=1)
    assert health.readiness().ok, "a feed failure does not make the producer unready"
    health.poll_failed("east", reason="commit_timeout", message="m", retry_in=1, consecutive=2)
    assert not health.readiness().ok
    health.offset_loaded("east", 41)
    assert health.readiness().ok


def test_alive_until_silent_for_longer_than_the_wedge_limit() -> None:
    clock = Clock()
    settings = _settings(poll_interval_seconds=600)
    health = FeedHealth(settings, clock=clock)
    limit = wedge_limit(settings.feeds[0], settings.kafka.commit_timeout_seconds)
    assert limit >= 3 * 600

    clock.now += 10 * limit
    assert health.liveness().ok, "a feed that has not reported yet (the connector is starting) is alive"

    health.poll_finished("east", seconds=1, rows=0, advanced=False)
    clock.now += limit - 1
    assert health.liveness().ok
    health.page_committed("east", PageReport(1, 2, 1, 0, 0, 0))
    clock.now += limit - 1
    assert health.liveness().ok
    clock.now += 2
    verdict = health.liveness()
    assert not verdict.ok
    assert verdict.detail["east"]["alive"] is False


def test_the_wedge_limit_outlasts_every_wait_of_a_healthy_loop() -> None:
    settings = _settings(poll_interval_seconds=1, backoff_max_seconds=900, read_timeout_seconds=120)
    feed = settings.feeds[0]
    limit = wedge_limit(feed, settings.kafka.commit_timeout_seconds)
    assert limit > feed.backoff_max_seconds + feed.read_timeout_seconds
    assert wedge_limit(_settings(poll_interval_seconds=1).feeds[0], 10) >= MIN_WEDGE_SECONDS


def test_a_huge_answer_sorted_on_disk_keeps_the_feed_alive() -> None:
    clock = Clock()
    settings = _settings(poll_interval_seconds=1)
    health = FeedHealth(settings, clock=clock)
    limit = float(health.liveness().detail["east"]["wedge_limit_seconds"])  # type: ignore[arg-type]
    health.poll_finished("east", seconds=1, rows=0, advanced=True)
    for rows in range(50_000, 500_001, 50_000):  # reading and sorting for longer than the limit, in steps
        clock.now += limit / 3
        health.answer_sorting("east", rows=rows, disk_bytes=rows * 650)
        assert health.liveness().ok
    clock.now += limit + 1
    assert not health.liveness().ok


def test_a_feed_goes_from_starting_through_catching_up_and_idle_to_backing_off_and_failed_and_back() -> None:
    clock, wall = Clock(), Clock()
    wall.now = 1_800_000_000.0
    health = FeedHealth(_settings(poll_interval_seconds=30), clock=clock, wall_clock=wall)
    assert health.state("east") == "starting"
    health.offset_loaded("east", 10)
    assert health.state("east") == "starting", "starting until the first poll ends"
    health.page_committed("east", PageReport(10, 20, 10, 0, 0, 0))
    assert health.state("east") == "catching_up"
    health.poll_finished("east", seconds=1, rows=10, advanced=True)
    assert health.state("east") == "catching_up"
    health.poll_finished("east", seconds=1, rows=0, advanced=False)
    east = health.status()["feeds"]["east"]
    assert east["state"] == "idle" and east["last_id"] == 20
    assert (
        east["next_attempt_at"] == "2027-01-15T08:00:30+00:00" and east["last_commit_at"] == "2027-01-15T08:00:00+00:00"
    )

    health.poll_failed("east", reason="http_5xx", message="the feed answered HTTP 503", retry_in=4, consecutive=1)
    east = health.status()["feeds"]["east"]
    assert east["state"] == "backing_off" and east["reason"] is None and east["consecutive_failures"] == 1
    assert east["last_failure"] == {
        "reason": "http_5xx",
        "message": "the feed answered HTTP 503",
        "at": "2027-01-15T08:00:00+00:00",
    }

    wall.now += 60
    health.feed_failed("east", reason="auth", message="the feed refused login 'l'", retry_in=90, consecutive=2)
    east = health.status()["feeds"]["east"]
    assert east["state"] == "failed" and east["reason"] == "auth" and east["stopped"] is False
    assert east["consecutive_failures"] == 2 and east["next_attempt_at"] == "2027-01-15T08:02:30+00:00"
    assert health.status()["status"] == "failed", "its only feed failed"

    health.poll_finished("east", seconds=1, rows=0, advanced=False)  # the rotated secret worked
    east = health.status()["feeds"]["east"]
    assert east["state"] == "idle" and east["reason"] is None and east["consecutive_failures"] == 0
    assert east["last_failure"]["reason"] == "auth", "the last failure stays on record"
    assert health.status()["status"] == "ok"


def test_a_fenced_feed_is_failed_and_stopped_with_no_next_attempt() -> None:
    health = FeedHealth(_two_feeds())
    for feed in ("a", "b"):
        health.offset_loaded(feed, 1)
        health.poll_finished(feed, seconds=1, rows=0, advanced=False)
    health.feed_failed("b", reason="fenced", message="another instance took over", retry_in=None, consecutive=1)
    status = health.status()
    b = status["feeds"]["b"]
    assert (b["state"], b["reason"], b["stopped"], b["next_attempt_at"]) == ("failed", "fenced", True, None)
    assert status["status"] == "degraded" and status["feeds"]["a"]["state"] == "idle"
    assert not health.is_ready("b")


def test_one_failed_feed_leaves_the_process_ready_and_alive_but_a_starting_or_wedged_one_does_not() -> None:
    clock = Clock()
    settings = _two_feeds(failed_retry_max_seconds=3600)
    health = FeedHealth(settings, clock=clock)
    health.offset_loaded("a", 1)
    assert not health.readiness().ok, "b has not loaded its offset yet"
    health.feed_failed("b", reason="auth", message="m", retry_in=3600, consecutive=1)
    assert health.readiness().ok, "a failed feed does not make the process unready"
    assert health.readiness().detail["b"]["state"] == "failed"

    clock.now += 3000  # the failed feed waits for its next attempt; that is not a wedge
    health.poll_finished("a", seconds=1, rows=0, advanced=False)
    assert health.liveness().ok
    health.feed_failed("b", reason="fenced", message="m", retry_in=None, consecutive=1)
    clock.now += 10 * 3600
    health.poll_finished("a", seconds=1, rows=0, advanced=False)
    verdict = health.liveness()
    assert verdict.ok and verdict.detail["b"]["stopped"] is True, "a feed stopped for good is left out"
    clock.now += 10 * 3600
    assert not health.liveness().ok, "a is wedged"

    health.feed_failed("a", reason="auth", message="m", retry_in=60, consecutive=1)
    assert not health.readiness().ok, "no feed works"


def test_the_wedge_limit_outlasts_the_wait_of_a_failed_feed() -> None:
    settings = _settings(poll_interval_seconds=1)
    assert wedge_limit(settings.feeds[0], 10, failed_retry_max_seconds=7200) > 7200


def test_the_states_are_a_closed_set() -> None:
    assert FEED_STATES == ("starting", "catching_up", "idle", "backing_off", "failed")
