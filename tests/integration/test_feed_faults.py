"""Feed faults under the connector as a real process, each judged by the checker.

Every fault here is one a real billing feed has, or could have: server errors, rate limits, resets,
connections that hang, answers that drip, are cut off, are HTML, empty, or not an array, a wrong
password, bad rows, repeated and shuffled rows, rows already delivered, a huge answer, and rows too
large for Kafka. The connector must retry what a retry can fix (and say why, with a reason label),
retry only slowly what it cannot (a refused login: the feed is failed until its secret is fixed), and in
every case publish each row exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.errors import DeadLetterRule
from cdr_stream.ops.checker import CheckResult, IdRange
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.support import (
    PASSWORD,
    ConnectorProcess,
    assert_clean,
    read_published,
    settings_for,
    write_config,
)
from tests.memory import peak_rss_kib

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


async def stream_to_the_end(
    kafka: KafkaSettings, topics: TopicSettings, sim: FeedSimulator, tmp_path: Path, **feed: Any
) -> tuple[ConnectorProcess, CheckResult]:
    """Run a connector process until it has committed the feed's last ID, stop it, and check the output."""
    settings = settings_for(sim, kafka, topics, **{"max_rows_per_transaction": 200, **feed})
    connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
    await connector.wait_offset(sim.max_id, timeout=120)
    assert await connector.stop() == 0, connector.tail()
    return connector, await assert_clean(kafka, topics, IdRange(1, sim.max_id))


# A fault (the simulator's knobs), the label the simulator gives it, and the connector's reason for it.
RETRIED = {
    "5xx": ({"error_5xx_rate": 0.4}, "error_5xx", "http_5xx"),
    "429 with Retry-After": ({"rate_limit_rate": 0.3, "retry_after_seconds": 1}, "rate_limit", "rate_limited"),
    "connection reset": ({"reset_rate": 0.4}, "reset", "connection"),
    "truncated JSON": ({"truncate_rate": 0.4}, "truncate", "truncated"),
    "HTML page with status 200": ({"html_error_rate": 0.4}, "html_error", "not_json_array"),
    "JSON that is not an array": ({"not_array_rate": 0.4}, "not_array", "not_json_array"),
    "a slow drip that never finishes": ({"drip_rate": 0.3, "drip_interval_ms": 100}, "drip", "timeout"),
}


@pytest.mark.parametrize("fault", list(RETRIED))
async def test_a_failed_answer_is_retried_with_its_reason_and_nothing_is_lost(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, fault: str
) -> None:
    knobs, label, reason = RETRIED[fault]
    config = SimulatorConfig(password=PASSWORD, records=3000, page_size=300, seed=7, **knobs)
    async with FeedSimulator(config) as sim:
        connector, _ = await stream_to_the_end(kafka, topics, sim, tmp_path, read_timeout_seconds=1.0)
        requests = list(sim.requests)
    assert any(request.fault == label for request in requests), [request.fault for request in requests]
    assert f"({reason}); retry" in connector.output(), connector.tail()
    if label == "rate_limit":  # the next request waits for Retry-After
        gaps = [after.at - before.at for before, after in itertools.pairwise(requests) if before.fault == label]
        assert gaps and min(gaps) >= 0.95, gaps


async def test_an_empty_body_is_no_rows_and_the_next_poll_goes_on(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=3000, page_size=300, seed=7, empty_body_rate=0.4)
    async with FeedSimulator(config) as sim:
        connector, _ = await stream_to_the_end(kafka, topics, sim, tmp_path)
        assert any(request.fault == "empty_body" for request in sim.requests)
    assert "retry" not in connector.output(), "an empty body is not a failure"


class Blackhole:
    """A listening socket whose accept queue is full: connect() to it hangs (the SYN is dropped)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)  # the queue's one place

    def close(self) -> None:
        self.filler.close()
        self.listener.close()


@contextmanager
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    try:
        yield hole
    finally:
        hole.close()


async def test_a_connect_that_hangs_times_out_and_is_retried_until_the_feed_answers(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    with blackhole() as hole:
        config = SimulatorConfig(password=PASSWORD, records=1500, page_size=300, port=hole.port)
        url = f"http://127.0.0.1:{hole.port}/billingfeed.php"
        settings = settings_for(FeedSimulator(config), kafka, topics, url=url, connect_timeout_seconds=0.5)
        connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
        await connector.wait_offset(0)
        while connector.output().count("(timeout); retry") < 2:
            assert connector.process.poll() is None, connector.tail()
            await asyncio.sleep(0.1)
    async with FeedSimulator(config) as sim:  # the feed comes up on that very port
        await connector.wait_offset(sim.max_id)
        assert await connector.stop() == 0, connector.tail()
    await assert_clean(kafka, topics, IdRange(1, 1500))


async def test_a_wrong_password_fails_the_feed_which_is_retried_only_on_the_long_backoff(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(SimulatorConfig(password="the-right-one", records=10)) as sim:
        settings = settings_for(sim, kafka, topics).model_copy(
            update={"failed_retry_initial_seconds": 1.0, "failed_retry_max_seconds": 2.0}
        )
        connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
        await asyncio.sleep(5)
        assert connector.process.poll() is None, "the process stays up: a fixed secret heals the feed"
        asked = len(sim.requests)
        assert await connector.stop() == 0, connector.tail()
    output = connector.output()
    assert "the feed refused login 'demo' (HTTP 401" in output and "check the login and the password secret" in output
    assert "next attempt in" in output
    assert PASSWORD not in output
    # Attempts at least half the backoff apart (0.5, 1, 1, ... s): at most 6 in 5 s, never a tight loop.
    assert 2 <= asked <= 6, asked
    result = await assert_clean(kafka, topics, None)
    assert result.distinct_ids == 0


async def test_a_wrong_password_with_give_up_after_one_attempt_exits_1_after_exactly_one_request(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(SimulatorConfig(password="the-right-one", records=10)) as sim:
        settings = settings_for(sim, kafka, topics).model_copy(update={"give_up_after_attempts": 1})
        connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
        assert await asyncio.to_thread(connector.process.wait, 60) == 1, connector.tail()
        asked = len(sim.requests)
    output = connector.output()
    assert "feed sim failed (auth): the feed refused login 'demo' (HTTP 401" in output
    assert "check the login and the password secret" in output and "stopping: every feed failed" in output
    assert PASSWORD not in output
    assert asked == 1, "given up after one attempt"
    result = await assert_clean(kafka, topics, None)
    assert result.distinct_ids == 0


async def test_rows_with_missing_or_malformed_fields_are_dead_lettered_with_their_rule(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=4000, page_size=500, invalid_rate=0.05, numbers_as="string")
    async with FeedSimulator(config) as sim:
        _, result = await stream_to_the_end(kafka, topics, sim, tmp_path)
        invalid = {row_id for row_id in sim.ids() if sim.is_invalid(row_id)}
    published = await read_published(kafka, topics)
    assert set(published.dead_letter_ids()) == invalid and len(invalid) > 100
    rules = {orjson.loads(record.value)["rule"] for record in published.dead_letters}
    assert {"missing_field", "invalid_field"} <= rules, rules
    assert result.dead_letters == len(invalid)


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"duplicate_rate": 1.0}, id="duplicate IDs in one page"),
        pytest.param({"resend_rate": 1.0}, id="IDs at or below the offset"),
        # Pages of 700 rows, transactions of 200: a shuffled page must still be published whole.
        pytest.param({"out_of_order": True}, id="IDs out of order in a page"),
        pytest.param({"duplicate_rate": 1.0, "resend_rate": 1.0, "out_of_order": True}, id="all three"),
    ],
)
async def test_repeated_old_and_shuffled_rows_are_published_once(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, knobs: dict[str, Any]
) -> None:
    config = SimulatorConfig(password=PASSWORD, records=4000, page_size=700, seed=3, **knobs)
    async with FeedSimulator(config) as sim:
        connector, result = await stream_to_the_end(kafka, topics, sim, tmp_path)
        faults = {request.fault for request in sim.requests if request.fault}
    assert faults, "the simulator should have shaped the answers"
    assert result.events + result.dead_letters == 4000
    dropped = sum(int(count) for count in re.findall(r"(\d+) dropped in ", connector.output()))
    assert (dropped > 0) == ("duplicate_rate" in knobs or "resend_rate" in knobs), dropped


async def test_rows_too_large_for_kafka_are_dead_lettered_not_retried_for_ever(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    # Regression: such a row failed its transaction (and the retries of it) for ever.
    config = SimulatorConfig(password=PASSWORD, records=1200, page_size=300, oversize_every=400, oversize_bytes=700_000)
    async with FeedSimulator(config) as sim:
        connector, result = await stream_to_the_end(kafka, topics, sim, tmp_path)
    assert "retry" not in connector.output(), connector.tail()
    published = await read_published(kafka, topics)
    letters = {value["id"]: value for value in map(orjson.loads, (r.value for r in published.dead_letters))}
    assert set(letters) == {400, 800, 1200}
    assert {letter["rule"] for letter in letters.values()} == {DeadLetterRule.TOO_LARGE}
    assert all(letter["field"] == "Notes" and letter["raw_truncated"] for letter in letters.values())
    assert result.dead_letters == 3


async def test_a_huge_answer_is_streamed_in_bounded_memory(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    # About 90 MB of JSON in one answer. Held whole, it and its parsed rows would take well over 500 MB;
    # streamed, the connector peaks near its idle size plus a few transactions' worth.
    config = SimulatorConfig(password=PASSWORD, records=150_000, page_size=0, seed=5)
    async with FeedSimulator(config) as sim:
        settings = settings_for(sim, kafka, topics, max_rows_per_transaction=10_000)
        connector = ConnectorProcess.start(write_config(tmp_path / "c.toml", settings), tmp_path / "connector.log")
        await connector.wait_offset(sim.max_id, timeout=300)
        peak_mib = peak_rss_kib(connector.pid) / 1024
        assert await connector.stop() == 0, connector.tail()
        answers = [request for request in sim.requests if request.rows]
    print(f"connector peak RSS {peak_mib:.0f} MiB for one answer of 150,000 rows")
    assert len(answers) == 1 and answers[0].rows == 150_000
    assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB"
    result = await assert_clean(kafka, topics, IdRange(1, 150_000))
    assert result.state_last_id == 150_000
