"""The replay runs (backfill, dlq replay) on the one loop, driven through a fake writer without a broker."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from cdr_stream.config import Settings
from cdr_stream.errors import (
    CommitUncertain,
    FailureReason,
    FeedAuthError,
    FeedError,
    RunError,
    WriteError,
)
from cdr_stream.pipeline.runs import MarkedRun
from cdr_stream.records.processor import ProcessedChunk, RecordProcessor
from tests.fakes import Failure, FakeKafka, FakeWriter
from tests.rows import feed_row

KEY = "run:f"


@dataclass(frozen=True)
class Progress:
    run: str
    last_id: int


class Retries:
    def __init__(self) -> None:
        self.reasons: list[FailureReason] = []

    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        self.reasons.append(reason)


class CountingRun(MarkedRun[Progress]):
    """Publishes IDs 1..`last` in transactions of 10; `feed_errors` fail the next chunks, in order."""

    def __init__(self, settings: Settings, kafka: FakeKafka, last: int, observer: Retries) -> None:
        super().__init__(
            settings,
            settings.feeds[0],
            settings.topics,
            state_key=KEY,
            id_suffix="run",
            observer=observer,
            writer=FakeWriter(kafka, "f"),
        )
        self.kafka = kafka
        self.last = last
        self.feed_errors: list[Exception] = []
        self.processor = RecordProcessor("f")

    async def _prepare(self) -> None:
        """No topics to make: the fake writer is the whole Kafka side."""

    async def _load(self) -> Progress:
        stored = self.kafka.state.get(KEY)
        if stored is not None:
            return Progress(**orjson.loads(stored))
        return await self._commit(ProcessedChunk(), Progress("r1", 0))

    def _encode(self, progress: Progress) -> bytes:
        return orjson.dumps({"run": progress.run, "last_id": progress.last_id})

    async def _work(self, progress: Progress) -> Progress:
        while progress.last_id < self.last:
            if self.feed_errors:
                raise self.feed_errors.pop(0)
            ids = range(progress.last_id + 1, min(progress.last_id + 10, self.last) + 1)
            chunk = self.processor.process_chunk([feed_row(i) for i in ids], progress.last_id)
            progress = await self._commit(chunk, Progress(progress.run, ids[-1]))
        return progress


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:9"},
            "feeds": [
                {
                    "name": "f",
                    "url": "http://127.0.0.1:9/billingfeed.php",
                    "login": "l",
                    "password": "p",
                    "backoff_initial_seconds": 0.01,
                    "backoff_max_seconds": 0.02,
                }
            ],
        }
    )


async def test_a_run_in_doubt_about_kafka_rebuilds_and_resumes_from_its_stored_progress() -> None:
    kafka, retries = FakeKafka(), Retries()
    run = CountingRun(_settings(), kafka, 35, retries)
    assert isinstance(run.writer, FakeWriter)
    run.writer.failures = [
        Failure(CommitUncertain("timed out"), applied=True),  # the fresh progress
        Failure(WriteError("broker gone")),  # IDs 1..10, not committed
    ]
    final = await run.run()
    assert final.last_id == 35
    assert kafka.event_ids == list(range(1, 36)), "nothing lost, nothing twice"
    assert retries.reasons == [FailureReason.COMMIT_TIMEOUT, FailureReason.COMMIT_FAILED]
    assert run.writer.starts == 3 and not run.writer.started


async def test_a_run_retries_what_the_feed_may_fix_and_ends_on_what_it_cannot() -> None:
    kafka, retries = FakeKafka(), Retries()
    run = CountingRun(_settings(), kafka, 25, retries)
    run.feed_errors = [FeedError(FailureReason.TIMEOUT, "no answer")]
    assert (await run.run()).last_id == 25
    assert retries.reasons == [FailureReason.TIMEOUT]

    refused = CountingRun(_settings(), FakeKafka(), 25, Retries())
    refused.feed_errors = [FeedAuthError(FailureReason.AUTH, "the feed refused login 'l'")]
    with pytest.raises(RunError, match="refused login"):
        await refused.run()


async def test_a_run_taken_over_by_another_process_says_so() -> None:
    kafka = FakeKafka()
    run = CountingRun(_settings(), kafka, 25, Retries())
    run.feed_errors = [FeedError(FailureReason.TIMEOUT, "no answer")]
    original = run._work

    async def taken_over(progress: Progress) -> Progress:
        kafka.owner = object()  # another process started the same run
        return await original(progress)

    run._work = taken_over  # type: ignore[method-assign]
    with pytest.raises(RunError, match="another process took over this run"):
        await run.run()
    assert kafka.event_ids == []


def test_the_names_a_run_stores_in_kafka_stay_as_earlier_versions_made_them() -> None:
    # A run resumes from the progress stored under its key: a changed digest would start it over.
    from datetime import date

    from cdr_stream.pipeline.backfill import BackfillWindow, RunIdentity
    from cdr_stream.pipeline.dlq import ReplayIdentity, ReplaySelection

    hour = RunIdentity("f", BackfillWindow(date(2023, 4, 2), date(2023, 4, 2), 5), "cdr.events")
    week = RunIdentity("f", BackfillWindow(date(2023, 4, 2), date(2023, 4, 9)), "cdr.events")
    replay = ReplayIdentity("f", ReplaySelection("invalid_value", 3, None), "cdr.events")
    assert (hour.state_key, hour.id_suffix, hour.run_id(2)) == (
        "backfill/f/8872cd3f3610",
        "backfill-8872cd3f3610",
        "f-8872cd3f3610-2",
    )
    assert week.state_key == "backfill/f/5763a8bcbc05"
    assert (replay.state_key, replay.run_id(2)) == ("dlq-replay/f/b005d173521e", "dlq-f-b005d173521e-2")
