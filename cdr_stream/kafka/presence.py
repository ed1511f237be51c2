"""Whether a feed's connector is running right now, for commands that must not race it (`state set`).

A running connector keeps one member in a consumer group named after the feed's transactional id; the
group has members exactly while a connector is alive (a killed one drops out after the session
timeout). The member polls the small state topic so it never counts as idle.

The member joins in the background: after a kill -9 the dead member stays in the group until its
session expires, and a join waits for that (up to SESSION_TIMEOUT_MS). The feed must not wait with it;
`state set` stays safe meanwhile because it fences the feed's transactional id anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cdr_stream.config import KafkaSettings
from cdr_stream.kafka.clients import admin_client, connection_options
from cdr_stream.kafka.writer import transactional_id
from cdr_stream.pipeline.backoff import STARTUP_BACKOFF

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS: Final = 10_000
_STOP_SECONDS: Final = 1.0


def presence_group(kafka: KafkaSettings, feed: str) -> str:
    return f"{transactional_id(kafka, feed)}.running"


class FeedPresence:
    """Membership of the feed's presence group, kept by a background task while the connector runs."""

    def __init__(self, kafka: KafkaSettings, state_topic: str, feed: str) -> None:
        self._kafka = kafka
        self._state_topic = state_topic
        self._feed = feed
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the group in the background, retrying while Kafka is unreachable; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_alive(), name="cdr-stream presence")
            self._task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        # Only a bug ends the task (Kafka's errors are retried): the feed runs on without its member, so
        # `state set` would not see it and a rival would not be told; say so loudly.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("feed %s: its presence member crashed", self._feed, exc_info=error, extra={"feed": self._feed})

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self._state_topic,
            group_id=presence_group(self._kafka, self._feed),
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=3_000,
            # Its partitions are paused (see _keep_alive): the fetcher need not wake up five times a second
            # to find that out; a new assignment wakes it anyway.
            consumer_timeout_ms=5_000,
            **connection_options(self._kafka),
        )

    async def _join(self) -> AIOKafkaConsumer:
        failures = 0
        while True:
            consumer = self._consumer = self._new_consumer()
            try:
                await consumer.start()
                return consumer
            except (KafkaError, OSError) as exc:
                failures += 1
                log.debug("presence join failed: %s", type(exc).__name__)
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await asyncio.sleep(STARTUP_BACKOFF.delay(failures))

    async def _keep_alive(self) -> None:
        consumer = await self._join()
        while True:
            # Paused, the member keeps its place (heartbeats, polls) but fetches nothing: an idle fetch
            # every half second for each feed was most of what a waiting process did.
            consumer.pause(*consumer.assignment())
            try:
                await consumer.getmany(timeout_ms=5_000)
            except KafkaError as exc:  # the coordinator is away; membership resumes when it is back
                log.debug("presence poll failed: %s", type(exc).__name__)
                await asyncio.sleep(1)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # a crash was reported when it happened; the stop goes on
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                # A member still joining waits for its JoinGroup answer, which after a kill -9 comes only
                # when the dead member's session expires: a stop must not wait that long.
                await asyncio.wait_for(consumer.stop(), _STOP_SECONDS)
            except TimeoutError:
                log.debug("presence consumer did not stop within %.0f s; left to the session timeout", _STOP_SECONDS)


async def running_members(kafka: KafkaSettings, feed: str) -> list[str]:
    """Member ids of the live members of the feed's presence group (empty when none runs)."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([presence_group(kafka, feed)])
    finally:
        await admin.close()
    return _live_members(responses).get(presence_group(kafka, feed), [])


def _live_members(responses: list[Any]) -> dict[str, list[str]]:
    """Group id -> the member ids of its live members, from DescribeGroups answers."""
    members: dict[str, list[str]] = {}
    for response in responses:
        for group in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members...); members start with their id
            if group[0] == 0 and group[2] in ("Stable", "PreparingRebalance", "CompletingRebalance"):
                members[group[1]] = [str(member[0]) for member in group[5]]
    return members


class RivalWatch:
    """Whether another instance runs a feed of this process: the feed's presence group has more than one
    live member.

    One admin client, started on the first check and kept, serves every feed of the process, and each
    group's coordinator is looked up once. (A client started and closed for each check of each feed was
    most of what an idle feed cost.) Each check asks about its own group: aiokafka misreads a
    DescribeGroups answer about several groups.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._admin: AIOKafkaAdminClient | None = None
        self._coordinators: dict[str, int] = {}
        self._starting = asyncio.Lock()

    async def has_rival(self, feed: str) -> bool:
        """True when the feed's presence group shows more than one live member; False when it does not
        or when Kafka could not say (the next check asks again)."""
        group = presence_group(self._kafka, feed)
        try:
            admin = await self._started()
            node = self._coordinators.get(group)
            if node is None:
                node = self._coordinators[group] = await admin.find_coordinator(group)
            responses = await admin.describe_consumer_groups([group], group_coordinator_id=node)
        except (KafkaError, OSError) as exc:
            log.debug("rival check failed: %s", type(exc).__name__)
            await self.close()  # a new client for the next check
            return False
        members = _live_members(responses)
        if group not in members:
            self._coordinators.pop(group, None)  # moved, or not there yet: look it up again next time
        return len(members.get(group, ())) > 1

    async def _started(self) -> AIOKafkaAdminClient:
        async with self._starting:
            if self._admin is None:
                admin = admin_client(self._kafka)
                await admin.start()
                self._admin = admin
            return self._admin

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        self._coordinators.clear()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
