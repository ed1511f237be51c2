"""The offsets of all feeds, kept in a compacted topic keyed by feed name (other state, such as a backfill
run's progress, shares the topic under keys that hold a '/').

Reading them back must reach the true end of the topic: a stale offset would publish rows again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from cdr_stream.config import KafkaSettings
from cdr_stream.readback import TopicMissingError, committed_records


class StateReadError(Exception):
    """The state topic could not be read to its end."""


@dataclass(frozen=True, slots=True)
class StoredOffset:
    feed: str
    last_id: int
    committed_at: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"feed": self.feed, "last_id": self.last_id, "committed_at": self.committed_at})

    @classmethod
    def decode(cls, value: bytes) -> StoredOffset:
        data: Any = orjson.loads(value)
        last_id = data.get("last_id") if isinstance(data, dict) else None
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            raise ValueError(f"not a stored offset: {value[:100]!r}")
        return cls(feed=str(data.get("feed")), last_id=last_id, committed_at=data.get("committed_at"))

    @classmethod
    def now(cls, feed: str, last_id: int) -> StoredOffset:
        return cls(feed, last_id, datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def is_offset_key(key: str) -> bool:
    """Feed offsets are keyed by the feed name. Other state in the topic (a backfill run's progress) has a
    '/' in its key, which no feed name can hold."""
    return "/" not in key


async def read_state(
    kafka: KafkaSettings, topic: str, keep: Callable[[str], bool], *, timeout: float = 60.0
) -> dict[str, bytes]:
    """The latest committed value of every key in the state topic that `keep` accepts (tombstones remove)."""
    values: dict[str, bytes] = {}

    async def read() -> None:
        async for records in committed_records(kafka, [topic]):
            for record in records:
                key = record.key.decode() if record.key else ""
                if not keep(key):
                    continue
                if record.value is None:
                    values.pop(key, None)  # a tombstone
                else:
                    values[key] = record.value

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        message = f"the state topic {topic!r} could not be read to its end within {timeout:g} s"
        raise StateReadError(message) from None
    except TopicMissingError as exc:
        raise StateReadError(str(exc)) from None
    return values


async def read_offsets(kafka: KafkaSettings, topic: str, *, timeout: float = 60.0) -> dict[str, StoredOffset]:
    """The latest committed offset of every feed in the state topic."""
    values = await read_state(kafka, topic, is_offset_key, timeout=timeout)
    return {key: StoredOffset.decode(value) for key, value in values.items()}
