"""Create the connector's topics if missing, refuse a state topic that is not compacted, and warn when
the events topic's retention would delete old CDRs.

Events carry the call's time as their Kafka timestamp, and Kafka's time retention goes by record
timestamps: on a topic with retention.ms of 30 days, a catch-up of 40-day-old CDRs is deleted at the
broker's next retention check, minutes after it was committed. Topics the connector creates therefore
keep records by time forever unless `topics.retention_ms` says otherwise.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.errors import TopicSetupError
from cdr_stream.kafka.clients import admin_client

log = logging.getLogger(__name__)


async def prepare_topics(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Create what is missing and check the state topic, with a short-lived admin client."""
    admin = admin_client(kafka)
    try:
        await admin.start()
        await ensure_topics(admin, topics)
    finally:
        await admin.close()


async def ensure_topics(admin: AIOKafkaAdminClient, topics: TopicSettings) -> None:
    existing = set(await admin.list_topics())
    replication = topics.replication_factor or await default_replication(admin)
    retention = {"retention.ms": str(topics.retention_ms)}
    wanted = [
        NewTopic(topics.events, topics.events_partitions, replication, topic_configs=retention),
        NewTopic(topics.dead_letter, topics.dead_letter_partitions, replication, topic_configs=retention),
        # One partition: a handful of keys, and one place to read them from.
        NewTopic(topics.state, 1, replication, topic_configs={"cleanup.policy": "compact"}),
    ]
    missing = [topic for topic in wanted if topic.name not in existing]
    if missing and not topics.create:
        names = ", ".join(topic.name for topic in missing)
        raise TopicSetupError(f"topics missing: {names}; create them or set topics.create = true")
    for topic in missing:
        try:
            response = await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            continue  # another instance won the race
        for name, code, *rest in getattr(response, "topic_errors", []):
            if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                raise TopicSetupError(f"cannot create topic {name!r}: error {code} {rest[0] if rest else ''}".strip())
        log.info("created topic %s", topic.name)
    if missing:
        await _wait_for_leaders(admin, [topic.name for topic in missing])
    await check_state_topic(admin, topics.state)
    await warn_on_time_retention(admin, topics.events)


async def default_replication(admin: AIOKafkaAdminClient) -> int:
    """The replication of created topics when unset: 3, fewer on a smaller cluster, more when the cluster's
    default.replication.factor says so. The count is of the brokers up now, so alone it would give a topic
    created while one of three is down two replicas for good; the cluster's default keeps it at three."""
    brokers = (await admin.describe_cluster())["brokers"]
    resource = ConfigResource(
        ConfigResourceType.BROKER, str(brokers[0]["node_id"]), {"default.replication.factor": None}
    )
    configured = 1
    for response in await admin.describe_configs([resource]):
        for _code, _message, _type, _name, entries in response.resources:
            for entry in entries:
                if entry[0] == "default.replication.factor" and entry[1]:
                    configured = int(entry[1])
    return max(configured, min(3, len(brokers)))


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0) -> None:
    """CreateTopics answers before every partition has a leader; writing earlier fails needlessly."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            topic["error_code"] == 0 and topic["partitions"] and all(p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        )
        if ready:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TopicSetupError(f"topics {', '.join(names)} have no leader {timeout:g} s after creation")
        await asyncio.sleep(0.2)


async def topic_config(
    admin: AIOKafkaAdminClient, name: str, keys: list[str], timeout: float = 15.0
) -> dict[str, str | None]:
    """The topic's values of `keys`. On a cluster, the broker asked may not know a topic created a moment
    ago (UNKNOWN_TOPIC_OR_PARTITION) while another already leads it: asked again until it does."""
    resource = ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(keys))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found: dict[str, str | None] = dict.fromkeys(keys)
        errors: list[str] = []
        for response in await admin.describe_configs([resource]):
            for error_code, error_message, _type, _name, entries in response.resources:
                if error_code:
                    errors.append(f"error {error_code} {error_message or ''}".strip())
                for entry in entries:  # (name, value, read_only, ...)
                    if entry[0] in found:
                        found[entry[0]] = entry[1]
        if not errors:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise TopicSetupError(f"cannot read the configuration of topic {name!r}: {'; '.join(errors)}")
        await asyncio.sleep(0.2)


async def check_state_topic(admin: AIOKafkaAdminClient, name: str) -> None:
    """The offsets must survive retention: only compaction keeps the latest value per feed for ever."""
    policy = (await topic_config(admin, name, ["cleanup.policy"]))["cleanup.policy"]
    # "compact,delete" is refused too: after retention.ms an idle feed's offset would be deleted.
    if policy is None or policy.replace(" ", "") != "compact":
        raise TopicSetupError(
            f"the state topic {name!r} has cleanup.policy={policy}; it must be compacted, or the stored "
            f"offsets expire and records are published again. Fix: kafka-configs --alter --entity-type "
            f"topics --entity-name {name} --add-config cleanup.policy=compact (or pick another topics.state)"
        )


async def warn_on_time_retention(admin: AIOKafkaAdminClient, name: str) -> None:
    """A finite retention on call-time timestamps deletes CDRs older than it right after they are written."""
    config = await topic_config(admin, name, ["retention.ms", "cleanup.policy", "message.timestamp.type"])
    retention = int(config["retention.ms"] or -1)
    deletes = "delete" in (config["cleanup.policy"] or "delete")
    if retention >= 0 and deletes and config["message.timestamp.type"] != "LogAppendTime":
        log.warning(
            "the events topic %s deletes records older than %.1f days by their timestamp, which is the call's "
            "time: CDRs older than that (a catch-up of old records) are deleted at the broker's next retention "
            "check, right after they are committed. Set retention.ms=-1 (or a size limit) on the topic if "
            "consumers may read that late",
            name,
            retention / 86_400_000,
            extra={"topic": name, "retention_ms": retention},
        )
