"""The connector: one poll task per configured feed, started together, each failing on its own.

`await connector.start()` prepares topics and starts the tasks; `await connector.wait()` returns when
they end; `await connector.stop()` drains them (the page in flight commits or aborts) and is safe to
call twice. A feed that stops for good (fenced, given up, or its task crashed) is noted by a
done-callback; its siblings go on. The connector stops, and `wait()` raises ConnectorError, only when
every feed has stopped for good, or at the first one with `exit_when_any_feed_fails`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from aiokafka.errors import KafkaConnectionError, KafkaError

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import FeedSettings, Settings
from cdr_stream.errors import ConnectorError, FailureReason, FeedStopped
from cdr_stream.kafka.clients import check_authentication
from cdr_stream.kafka.presence import FeedPresence, RivalWatch
from cdr_stream.kafka.state import StoredOffset, read_offsets
from cdr_stream.kafka.topics import prepare_topics
from cdr_stream.kafka.writer import TransactionalWriter
from cdr_stream.ops.logs import describe_error, quiet_abandoned_kafka_futures
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.ops.service import Service
from cdr_stream.pipeline.backoff import STARTUP_BACKOFF
from cdr_stream.pipeline.observer import PollObserver
from cdr_stream.pipeline.poller import FailurePolicy, FeedPoller
from cdr_stream.sources.base import Source, SourceContext, open_source
from cdr_stream.sources.http import FeedTransport

log = logging.getLogger(__name__)

TransportFactory = Callable[[FeedSettings], FeedTransport]


class Connector(Service):
    def __init__(
        self,
        settings: Settings,
        *,
        observer: PollObserver | None = None,
        transport_factory: TransportFactory | None = None,
        space: TempSpace | None = None,
    ) -> None:
        self.settings = settings
        #: Where the feeds sort large answers on disk (shared: its byte limit is the process's).
        self.space = space or TempSpace(settings.tmp_dir, settings.tmp_max_bytes)
        self.observer: PollObserver = observer or ProgressLog()
        self._transport_factory = transport_factory
        self.pollers: list[FeedPoller] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        #: The feeds stopped for good, by name, in the order they stopped.
        self.stopped_feeds: dict[str, FeedStopped] = {}
        self._failed = False  # the connector stops because its feeds did
        self._retiring: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._presences: list[FeedPresence] = []
        self._rival_watch = RivalWatch(settings.kafka)

    async def start(self) -> None:
        """Prepare the topics (retrying while Kafka is unreachable) and start one task per feed.

        A stop requested meanwhile ends the start quietly: no task runs, and `wait()` returns at once.
        """
        quiet_abandoned_kafka_futures(asyncio.get_running_loop())
        for leftover in self.space.sweep():
            log.info("removed %s, left by a process that stopped while sorting an answer", leftover)
        kafka, topics = self.settings.kafka, self.settings.topics
        if not await self._retry_until_ready(lambda: prepare_topics(kafka, topics), "topic setup"):
            return
        for feed in self.settings.feeds:
            presence = FeedPresence(kafka, topics.state, feed.name)
            self._presences.append(presence)
            if not await self._retry_until_ready(presence.start, f"presence of feed {feed.name}"):
                return
        for feed in self.settings.feeds:
            poller = self._poller(feed)
            self.pollers.append(poller)
            task = asyncio.create_task(poller.run(self._stopping), name=f"cdr-stream feed {feed.name}")
            task.add_done_callback(partial(self._on_task_done, feed.name))
            self._tasks.append(task)
        log.info("connector started with %d feed(s)", len(self.pollers))

    async def _retry_until_ready(self, step: Callable[[], Awaitable[None]], what: str) -> bool:
        """Run `step` until it succeeds (True) or a stop is requested (False).

        Raises KafkaAuthenticationError, not retried, when what fails is Kafka refusing the SASL login.
        """
        failures = 0
        while not self._stopping.is_set():
            try:
                await step()
                return True
            except (KafkaError, OSError) as exc:
                if isinstance(exc, KafkaConnectionError):
                    await check_authentication(self.settings.kafka)  # a refused login is not retried
                failures += 1
                delay = STARTUP_BACKOFF.delay(failures)
                log.warning("%s failed (%s); retry %d in %.1f s", what, describe_error(exc), failures, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return False

    def _open_source(self, feed: FeedSettings) -> Source:
        return open_source(feed, SourceContext(self.space, self.observer, self._transport_factory))

    def _poller(self, feed: FeedSettings) -> FeedPoller:
        kafka, topics = self.settings.kafka, self.settings.topics

        async def load_state() -> StoredOffset:
            stored = (await read_offsets(kafka, topics.state)).get(feed.name)
            return stored or StoredOffset(feed.name, feed.initial_from_id)

        async def rivals() -> bool:
            return await self._rival_watch.has_rival(feed.name)

        settings = self.settings
        policy = FailurePolicy(
            retry_initial_seconds=settings.failed_retry_initial_seconds,
            retry_max_seconds=settings.failed_retry_max_seconds,
            give_up_after=1 if settings.exit_when_any_feed_fails else settings.give_up_after_attempts,
        )
        return FeedPoller(
            feed,
            self._open_source(feed),
            TransactionalWriter(kafka, topics, feed.name),
            load_state,
            self.observer,
            rivals=rivals,
            failure_policy=policy,
            open_source=self._open_source,
        )

    def _on_task_done(self, feed: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return  # a stop was requested
        if isinstance(error, FeedStopped):
            stopped = error
        else:
            # A bug, not a verdict on the feed: the traceback says where; the siblings go on.
            log.error("feed %s crashed", feed, exc_info=error, extra={"feed": feed})
            stopped = FeedStopped(feed, FailureReason.CRASHED, f"the feed's task crashed: {describe_error(error)}")
            self.observer.feed_failed(
                feed, reason=FailureReason.CRASHED, message=str(stopped), retry_in=None, consecutive=1
            )
        self.stopped_feeds[feed] = stopped
        retire = asyncio.create_task(self._retire(feed), name=f"cdr-stream retire {feed}")
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        left = len(self._tasks) - len(self.stopped_feeds)
        if self.settings.exit_when_any_feed_fails or left == 0:
            self._failed = True
            self._stopping.set()
        else:
            log.error(
                "feed %s stopped for good (%s); %d other feed(s) go on",
                feed,
                stopped.reason,
                left,
                extra={"feed": feed, "reason": stopped.reason},
            )

    async def _retire(self, feed: str) -> None:
        """Release what a feed stopped for good holds: its producer, and its member in the presence group
        (so the instance that fenced it no longer sees a rival, and `state set` is no longer refused)."""
        index = [settings.name for settings in self.settings.feeds].index(feed)
        try:
            await self.pollers[index].writer.stop()
            await self._presences[index].stop()
        except (KafkaError, OSError) as exc:
            log.warning("feed %s: releasing its Kafka clients failed: %s", feed, describe_error(exc))

    def request_stop(self) -> None:
        """Ask every feed to finish its page in flight and stop (what SIGTERM does)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait(self) -> None:
        """Until every feed task has ended; raises ConnectorError when they ended because the feeds stopped
        for good (all of them, or one with `exit_when_any_feed_fails`), not because a stop was requested."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._failed:
            raise ConnectorError(dict(self.stopped_feeds))

    async def stop(self, timeout: float | None = None) -> None:
        """Drain: let the pages in flight commit within `timeout`, then cancel (aborting them). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        timeout = self.settings.shutdown_timeout_seconds if timeout is None else timeout
        pending = [task for task in [*self._tasks, *self._retiring] if not task.done()]
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=timeout)
            for task in still_running:
                log.warning("%s did not finish in %.0f s; aborting its transaction", task.get_name(), timeout)
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=5)
        for poller in self.pollers:
            await poller.writer.stop()
            await poller.source.close()
        for presence in self._presences:
            await presence.stop()
        await self._rival_watch.close()
        log.info("connector stopped")
