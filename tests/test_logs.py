"""Log lines: structured extras, and no flood of repeated client errors while Kafka is away."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.errors import ProducerFenced

from cdr_stream.logs import RepeatFilter, describe_error, quiet_abandoned_kafka_futures


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_of_a_kafka_client_message_are_held_back_and_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval=60.0, clock=lambda: now[0])
    flood = [record("aiokafka", "Unable connect to node with id %s: %s", 1, f"attempt {n}") for n in range(500)]
    assert [repeats.filter(line) for line in flood].count(True) == 1
    assert repeats.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"))
    assert repeats.filter(record("cdr_stream.poller", "Unable connect to node with id %s: %s", 1, "x"))
    now[0] = 61.0
    later = record("aiokafka", "Unable connect to node with id %s: %s", 1, "again")
    assert repeats.filter(later)
    assert later.repeats_not_shown == 499  # type: ignore[attr-defined]


def test_other_loggers_are_never_held_back() -> None:
    repeats = RepeatFilter()
    assert all(repeats.filter(record("cdr_stream.progress", "feed %s: retry", "f")) for _ in range(100))


def test_describe_error_names_the_type_once() -> None:
    assert describe_error(ValueError("bad")) == "ValueError: bad"
    assert describe_error(TimeoutError()) == "TimeoutError"


async def test_a_never_retrieved_kafka_future_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    quiet_abandoned_kafka_futures(loop)
    never = "Future exception was never retrieved"
    try:
        with caplog.at_level(logging.DEBUG):
            loop.call_exception_handler({"message": never, "exception": ProducerFenced()})
            loop.call_exception_handler({"message": never, "exception": KeyError(1)})
    finally:
        loop.set_exception_handler(before)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(level == "DEBUG" and "abandoned Kafka request ended: ProducerFenced" in m for level, m in levels), levels
    assert any(level == "ERROR" and never in message for level, message in levels), levels
