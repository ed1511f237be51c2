"""Liveness and readiness, learnt from the poll loop's reports."""

from __future__ import annotations

from cdr_stream.config import Settings, parse_settings
from cdr_stream.health import MIN_WEDGE_SECONDS, FeedHealth, wedge_limit
from cdr_stream.poller import PageReport


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _settings(**feed: object) -> Settings:
    values = {"name": "east", "url": "http://127.0.0.1:1/feed", "login": "l", "password": "p", **feed}
    return parse_settings({"feeds": [values]}, {})


def test_ready_after_the_offset_is_loaded_and_not_while_kafka_is_rebuilt() -> None:
    health = FeedHealth(_settings())
    assert not health.readiness().ok
    health.offset_loaded("east", 41)
    verdict = health.readiness()
    assert verdict.ok and verdict.detail["east"] == {"ready": True, "last_id": 41}
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
    limit = wedge_limit(settings.feeds[0], settings.kafka.commit_timeout_seconds)
    health.poll_finished("east", seconds=1, rows=0, advanced=True)
    for rows in range(50_000, 500_001, 50_000):  # reading and sorting for longer than the limit, in steps
        clock.now += limit / 3
        health.answer_sorting("east", rows=rows, disk_bytes=rows * 650)
        assert health.liveness().ok
    clock.now += limit + 1
    assert not health.liveness().ok
