"""The live poll loop driven through its seams (a fake source and a fake writer), without a broker:
catch-up, waiting, backoff and Retry-After, Kafka doubt, fencing, final failures, and a stop in every phase."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from cdr_stream.config import FeedSettings
from cdr_stream.errors import (
    CommitUncertain,
    ConfigError,
    FailureReason,
    FeedAuthError,
    FeedError,
    FeedStopped,
    StateReadError,
    WriteError,
)
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.pipeline.poller import FailurePolicy, FeedPoller
from cdr_stream.sources.base import Source
from tests.fakes import Failure, FakeKafka, FakeSource, FakeWriter, RecordingObserver

FEED = "f"
#: Short enough for a test, long enough that "it waited" is distinguishable from "it did not".
IDLE = 30.0


def settings(**changes: object) -> FeedSettings:
    values: dict[str, object] = {
        "name": FEED,
        "url": "http://127.0.0.1:9/billingfeed.php",
        "login": "l",
        "password": "p",
        "poll_interval_seconds": IDLE,
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
    }
    values.update(changes)
    return FeedSettings.model_validate(values)


class Harness:
    """One poller over a fake source and a fake writer; `kafka` is what a broker would hold."""

    def __init__(
        self,
        source: FakeSource,
        *,
        policy: FailurePolicy | None = None,
        rivals: Callable[[], Awaitable[bool]] | None = None,
        reopened: list[FakeSource] | None = None,
        **feed: object,
    ) -> None:
        self.kafka = FakeKafka()
        self.source = source
        self.writer = FakeWriter(self.kafka, FEED)
        self.observer = RecordingObserver()
        self.stopping = asyncio.Event()
        self.loads = 0
        self.reopened = reopened

        async def load_state() -> StoredOffset:
            self.loads += 1
            return self.kafka.stored(FEED)

        def open_source(_: FeedSettings) -> Source:
            assert reopened is not None
            reopened.append(FakeSource([]))
            reopened[-1].rows = source.rows
            return reopened[-1]

        self.poller = FeedPoller(
            settings(**feed),
            source,
            self.writer,
            load_state,
            self.observer,
            rivals=rivals,
            failure_policy=policy,
            open_source=open_source if reopened is not None else None,
            rival_check_seconds=0.05,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.poller.run(self.stopping))

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.task is None or not self.task.done() or self.task.exception() is None, self.task
            assert time.monotonic() < deadline, f"not reached in {timeout} s; told {self.observer.kinds()}"
            await asyncio.sleep(0.005)

    async def stop(self, within: float = 1.0) -> float:
        """Request a stop; the seconds the loop took to end (it must end within `within`)."""
        assert self.task is not None
        started = time.monotonic()
        self.stopping.set()
        await asyncio.wait_for(self.task, within)
        return time.monotonic() - started

    @property
    def offset(self) -> int:
        return self.kafka.stored(FEED).last_id


async def test_it_catches_up_in_transactions_at_once_then_waits_the_poll_interval() -> None:
    h = Harness(FakeSource(list(range(1, 26)), chunk_rows=10))
    h.start()
    await h.until(lambda: h.observer.kinds().count("poll_finished") == 2)
    assert h.kafka.event_ids == list(range(1, 26))
    assert (h.offset, h.kafka.commits) == (25, 3)
    assert h.source.asked == [0, 25]  # the second poll follows at once and finds nothing
    await asyncio.sleep(0.2)
    assert h.source.asked == [0, 25], "an empty answer is followed by the poll interval, not another poll"
    assert await h.stop() < 0.5, "a stop ends the idle wait at once"


async def test_rows_that_arrive_while_it_waits_are_collected_at_the_next_poll() -> None:
    h = Harness(FakeSource([1, 2, 3]), poll_interval_seconds=0.1)
    h.start()
    await h.until(lambda: h.offset == 3)
    h.source.grow([4, 5])
    await h.until(lambda: h.offset == 5)
    await h.stop()
    assert h.kafka.event_ids == [1, 2, 3, 4, 5]


async def test_a_retriable_failure_backs_off_at_least_the_feeds_retry_after_then_resets() -> None:
    source = FakeSource([1, 2])
    source.errors = [
        FeedError(FailureReason.RATE_LIMITED, "slow down", retry_after=0.3),
        FeedError(FailureReason.TIMEOUT, "no answer"),
    ]
    h = Harness(source)
    h.start()
    started = time.monotonic()
    await h.until(lambda: h.offset == 2)
    assert time.monotonic() - started >= 0.3, "the Retry-After is a floor"
    first, second = h.observer.failures()
    assert (first.kind, first.reason, first.consecutive) == ("poll_failed", FailureReason.RATE_LIMITED, 1)
    assert first.retry_in is not None and first.retry_in >= 0.3
    assert (second.reason, second.consecutive) == (FailureReason.TIMEOUT, 2)
    assert second.retry_in is not None and second.retry_in <= 0.05, "capped by backoff_max_seconds"
    assert h.writer.starts == 1 and h.loads == 1, "a feed failure does not touch the Kafka side"
    h.source.errors = [FeedError(FailureReason.HTTP_5XX, "oops")]
    h.source.grow([3])
    await h.stop()
    assert h.kafka.event_ids == [1, 2]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (Failure(CommitUncertain("timed out"), applied=True), FailureReason.COMMIT_TIMEOUT),
        (Failure(CommitUncertain("timed out"), applied=False), FailureReason.COMMIT_TIMEOUT),
        (Failure(WriteError("broker gone")), FailureReason.COMMIT_FAILED),
    ],
)
async def test_a_commit_in_doubt_rebuilds_the_writer_and_resumes_from_what_kafka_holds(
    failure: Failure, reason: FailureReason
) -> None:
    h = Harness(FakeSource(list(range(1, 26)), chunk_rows=10))
    # The second transaction (IDs 11..20) fails.
    original = h.writer.commit_with_state
    calls = 0

    async def second_fails(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            h.writer.failures = [failure]
        await original(*args, **kwargs)  # type: ignore[arg-type]

    h.writer.commit_with_state = second_fails  # type: ignore[method-assign]
    h.start()
    await h.until(lambda: h.offset == 25 and "poll_finished" in h.observer.kinds())
    await h.stop()
    assert h.kafka.event_ids == list(range(1, 26)), "nothing lost, nothing twice"
    (told,) = h.observer.failures()
    assert (told.kind, told.reason) == ("poll_failed", reason)
    assert (h.writer.starts, h.loads) == (2, 2), "the writer is rebuilt and the offset read again"
    assert h.source.asked[:2] == [0, 20 if failure.applied else 10]


async def test_a_state_that_cannot_be_read_is_retried_with_the_writer_rebuilt() -> None:
    h = Harness(FakeSource([1, 2]))
    loads = 0
    real = h.poller._load_state

    async def flaky() -> StoredOffset:
        nonlocal loads
        loads += 1
        if loads == 1:
            raise StateReadError("the state topic did not answer")
        return await real()

    h.poller._load_state = flaky
    h.start()
    await h.until(lambda: h.offset == 2)
    await h.stop()
    (told,) = h.observer.failures()
    assert told.reason == FailureReason.STATE_READ and h.writer.starts == 2


async def test_a_fenced_writer_stops_the_feed_for_good_without_retrying() -> None:
    h = Harness(FakeSource([1, 2]), poll_interval_seconds=0.05)
    h.start()
    await h.until(lambda: h.offset == 2)
    FakeWriter(h.kafka, FEED).kafka.owner = object()  # another instance started with the same id
    h.source.grow([3])
    assert h.task is not None
    with pytest.raises(FeedStopped) as stopped:
        await asyncio.wait_for(h.task, 2)
    assert stopped.value.fenced and stopped.value.reason == FailureReason.FENCED
    assert h.observer.failures()[-1].kind == "feed_failed" and h.observer.failures()[-1].retry_in is None
    assert h.kafka.event_ids == [1, 2] and h.offset == 2


async def test_an_idle_feed_learns_it_was_fenced_from_its_rival_check() -> None:
    rival = asyncio.Event()

    async def rivals() -> bool:
        return rival.is_set()

    h = Harness(FakeSource([1]), rivals=rivals)  # the poll interval (30 s) is far away
    h.start()
    await h.until(lambda: h.offset == 1 and "poll_finished" in h.observer.kinds())
    h.kafka.owner = object()
    rival.set()
    assert h.task is not None
    with pytest.raises(FeedStopped) as stopped:
        await asyncio.wait_for(h.task, 2)
    assert stopped.value.fenced


async def test_a_refused_login_makes_the_feed_failed_reopened_with_fresh_secrets_then_given_up() -> None:
    source = FakeSource([1, 2])
    refused = FeedAuthError(FailureReason.AUTH, "the feed refused login 'l'")
    source.errors = [refused]
    reopened: list[FakeSource] = []
    policy = FailurePolicy(retry_initial_seconds=0.02, retry_max_seconds=0.05, give_up_after=3)
    h = Harness(source, policy=policy, reopened=reopened)
    h.start()
    await h.until(lambda: h.offset == 2)
    (told,) = h.observer.failures()
    assert (told.kind, told.reason) == ("feed_failed", FailureReason.AUTH)
    assert told.retry_in is not None and told.retry_in >= 0.01, "never shorter than half the ceiling"
    assert len(reopened) == 1 and source.closed == 1, "the source is opened anew before the next attempt"
    await h.stop()

    always = FakeSource([1])
    always.errors = [refused] * 5
    for_good = Harness(always, policy=policy)  # without open_source: the same source is asked again
    for_good.start()
    assert for_good.task is not None
    with pytest.raises(FeedStopped) as stopped:
        await asyncio.wait_for(for_good.task, 2)
    assert stopped.value.reason == FailureReason.AUTH and not stopped.value.fenced
    assert [t.retry_in is None for t in for_good.observer.failures()] == [False, False, True]
    assert for_good.kafka.event_ids == []


async def test_a_secret_that_cannot_be_read_again_is_a_final_failure_named_config() -> None:
    source = FakeSource([1])
    source.errors = [FeedAuthError(FailureReason.AUTH, "refused")]
    h = Harness(source, policy=FailurePolicy(0.01, 0.02, give_up_after=2), reopened=[])

    def unreadable(_: FeedSettings) -> Source:
        raise ConfigError("feeds (f): password_file cannot be read")

    h.poller._open_source = unreadable
    h.start()
    assert h.task is not None
    with pytest.raises(FeedStopped) as stopped:
        await asyncio.wait_for(h.task, 2)
    assert [t.reason for t in h.observer.failures()] == [FailureReason.AUTH, FailureReason.CONFIG]
    assert stopped.value.reason == FailureReason.CONFIG and "password_file" in str(stopped.value)


async def test_a_stop_before_the_first_poll_starts_nothing() -> None:
    h = Harness(FakeSource([1]))
    h.stopping.set()
    await h.poller.run(h.stopping)
    assert h.writer.starts == 0 and h.source.asked == []


async def test_a_stop_while_the_feed_answers_abandons_the_poll_and_commits_nothing() -> None:
    source = FakeSource([1, 2])
    source.gate = asyncio.Event()
    h = Harness(source)
    h.start()
    await h.until(lambda: h.source.asked == [0])
    assert await h.stop() < 0.5
    assert h.kafka.commits == 0 and h.offset == 0


async def test_a_stop_between_transactions_keeps_what_committed_and_asks_the_rest_again_later() -> None:
    h = Harness(FakeSource(list(range(1, 31)), chunk_rows=10))
    first_page = asyncio.Event()
    h.observer.on_page.append(first_page)
    h.writer.gate = asyncio.Event()
    h.start()
    await h.until(h.writer.committing.is_set)
    h.stopping.set()  # while the first transaction is in flight
    h.writer.gate.set()
    assert h.task is not None
    await asyncio.wait_for(h.task, 1)
    assert h.kafka.event_ids == list(range(1, 11)), "the page in flight commits; no other starts"
    assert h.offset == 10


async def test_a_stop_during_a_backoff_ends_the_wait_at_once() -> None:
    source = FakeSource([1])
    source.errors = [FeedError(FailureReason.HTTP_5XX, "down", retry_after=60)]
    h = Harness(source)
    h.start()
    await h.until(lambda: bool(h.observer.failures()))
    assert await h.stop() < 0.5
    assert h.kafka.commits == 0
