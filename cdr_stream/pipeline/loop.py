"""The one retry-and-commit loop. The live poller, backfill and dead-letter replay all run in it.

Each pass starts the writer if it is not started (which fences any older writer of the same
transactional id), loads what Kafka holds for the run if it is not loaded, and makes one attempt. A
failure is one of three kinds:
- Kafka in doubt (a commit failed or timed out, the state could not be read): the writer is rebuilt and
  the state read again, so the run always resumes from what Kafka really holds;
- retriable (the feed timed out, answered garbage...): the same attempt again after a backoff, at least
  the feed's Retry-After;
- final (a refused login, an unknown host key...): the `on_final` policy of the run decides, waiting long
  or stopping.
A writer fenced by another process ends the loop with WriterFenced; what that means is the run's call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka.errors import KafkaError

from cdr_stream.errors import CdrStreamError, FailureReason, StateReadError, WriteError, WriterFenced
from cdr_stream.kafka.base import Writer
from cdr_stream.ops.logs import describe_error
from cdr_stream.pipeline.backoff import Backoff


class Attempts(Protocol):
    """A run's side of the loop."""

    @property
    def loaded(self) -> bool:
        """True while what Kafka holds for the run (its offset or progress) is known."""

    async def load(self) -> None:
        """Read what Kafka holds for the run; the writer has started."""

    def forget(self) -> None:
        """Kafka is in doubt: forget what was loaded; it is read again once the writer is rebuilt."""

    async def attempt(self, stopping: asyncio.Event) -> float | None:
        """One attempt, committing as it goes: the seconds to wait before the next (0: at once), or None
        when the run is complete."""


class RetryObserver(Protocol):
    def retrying(self, reason: FailureReason, message: str, retry_in: float, consecutive: int) -> None:
        """A failure a retry may fix; the next attempt is in `retry_in` seconds."""


#: Told a failure final for the run, with the failures in a row and the final ones among them: returns
#: the seconds to wait before trying again, or raises to end the loop.
OnFinal = Callable[[CdrStreamError, int, int], Awaitable[float]]
#: Waits `seconds` unless `stopping` is set first.
Pause = Callable[[asyncio.Event, float], Awaitable[None]]
#: What Kafka (or the network to it) raises that leaves the Kafka side in doubt.
KAFKA_DOUBT = (WriteError, StateReadError, KafkaError, OSError)


def failure_reason(exc: BaseException) -> FailureReason:
    """The label of a failure: the error's own, or `kafka` for one raised by the Kafka client itself."""
    return exc.reason if isinstance(exc, CdrStreamError) else FailureReason.KAFKA


async def pause_unless_stopping(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


class CommitLoop:
    """Runs `attempts` with `writer` until they complete (`run` returns) or `stopping` is set."""

    def __init__(
        self,
        attempts: Attempts,
        writer: Writer,
        backoff: Backoff,
        observer: RetryObserver,
        on_final: OnFinal,
        *,
        pause: Pause = pause_unless_stopping,
    ) -> None:
        self.attempts = attempts
        self.writer = writer
        self.backoff = backoff
        self._observer = observer
        self._on_final = on_final
        self._pause = pause
        #: Failed attempts in a row, of any kind; and of those, the ones final for the run.
        self.failures = 0
        self.final_failures = 0

    def progressed(self) -> None:
        """The run moved on (a commit): the next failure starts the backoff afresh."""
        self.failures = self.final_failures = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if not self.writer.started:
                    await self.writer.start()  # fences older writers before the state is read
                if not self.attempts.loaded:
                    await self.attempts.load()
                wait = await self.attempts.attempt(stopping)
            except WriterFenced:
                raise
            except KAFKA_DOUBT as exc:
                wait = self._retry(failure_reason(exc), describe_error(exc), None)
                # Whatever Kafka holds now is the truth: rebuild the producer and read the state again.
                await self.writer.stop()
                self.attempts.forget()
            except CdrStreamError as exc:
                if exc.retriable:
                    wait = self._retry(exc.reason, str(exc), getattr(exc, "retry_after", None))
                else:
                    self.failures += 1
                    self.final_failures += 1
                    wait = await self._on_final(exc, self.failures, self.final_failures)
            else:
                if wait is None:
                    return
                self.progressed()
            if wait > 0:
                await self._pause(stopping, wait)

    def _retry(self, reason: FailureReason, message: str, retry_after: float | None) -> float:
        self.failures += 1
        wait = self.backoff.delay(self.failures, retry_after)
        self._observer.retrying(reason, message, wait, self.failures)
        return wait
