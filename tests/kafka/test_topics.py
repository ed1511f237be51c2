"""Reading a topic's configuration right after its creation (the checks against the real broker and the
cluster are in tests/integration/test_cluster_faults.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from cdr_stream.errors import TopicSetupError
from cdr_stream.kafka.topics import topic_config

_UNKNOWN_TOPIC = 3


@dataclass
class _Described:
    resources: list[tuple[int, str | None, int, str, list[tuple[str, str | None, bool]]]]


class _BrokerNotCaughtUp:
    """Answers UNKNOWN_TOPIC_OR_PARTITION `lagging` times (a broker that has not applied the new topic yet),
    then the topic's configuration."""

    def __init__(self, lagging: int) -> None:
        self.lagging = lagging
        self.calls = 0

    async def describe_configs(self, resources: list[Any]) -> list[_Described]:
        self.calls += 1
        (resource,) = resources
        if self.calls <= self.lagging:
            return [_Described([(_UNKNOWN_TOPIC, "This server does not host this topic", 2, resource.name, [])])]
        return [_Described([(0, None, 2, resource.name, [("cleanup.policy", "compact", False)])])]


async def test_a_topic_unknown_to_the_broker_asked_is_asked_again() -> None:
    admin = _BrokerNotCaughtUp(lagging=2)
    found = await topic_config(admin, "x.state", ["cleanup.policy"])  # type: ignore[arg-type]
    assert found == {"cleanup.policy": "compact"}
    assert admin.calls == 3


async def test_a_topic_that_stays_unknown_is_a_setup_error_naming_it() -> None:
    admin = _BrokerNotCaughtUp(lagging=1_000)
    with pytest.raises(TopicSetupError, match=r"'x\.state'.*error 3"):
        await topic_config(admin, "x.state", ["cleanup.policy"], timeout=0.5)  # type: ignore[arg-type]
