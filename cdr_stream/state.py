"""The offsets of all feeds, kept in a compacted topic keyed by feed name.

Reading them back must reach the true end of the topic: a stale offset would publish rows again.
"""

from __future__ import annotations

import asyncio
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


async def read_offsets(kafka: KafkaSettings, topic: str, *, timeout: float = 60.0) -> dict[str, StoredOffset]:
    """The latest committed offset of every feed in the state topic."""
    offsets: dict[str, StoredOffset] = {}

    async def read() -> None:
        async for records in committed_records(kafka, [topic]):
            for record in records:
                key = record.key.decode() if record.key else ""
                if record.value is None:
                    offsets.pop(key, None)  # a tombstone
                else:
                    offsets[key] = StoredOffset.decode(record.value)

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        message = f"the state topic {topic!r} could not be read to its end within {timeout:g} s"
        raise StateReadError(message) from None
    except TopicMissingError as exc:
        raise StateReadError(str(exc)) from None
    return offsets
