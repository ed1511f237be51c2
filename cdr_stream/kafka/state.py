"""The offsets of all feeds, kept in a compacted topic keyed by feed name (other state, such as a backfill
run's progress, shares the topic under keys that hold a '/').

Reading them back must reach the true end of the topic: a stale offset would publish rows again.
A feed collected from files also stores which files it has committed and how far into the file in
flight it got, under the key `files`; a value without it (every web service feed's) reads as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from cdr_stream.config import KafkaSettings
from cdr_stream.errors import StateReadError, TopicMissingError
from cdr_stream.kafka.readback import committed_records


def utc_now_stamp() -> str:
    """Now, as the state topic's values record a commit's time: UTC to the millisecond, `...T12:00:00.000Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class FileMark:
    """A file as a listing showed it: what tells a file collected earlier from a changed one."""

    size: int
    mtime: int


@dataclass(frozen=True, slots=True)
class FileInFlight:
    """The file being collected: its first `rows` rows are committed."""

    name: str
    mark: FileMark
    rows: int


@dataclass(frozen=True, slots=True)
class FilesPosition:
    """Where a file-collecting feed stands: files fully committed (while still listed) and the one in flight."""

    done: Mapping[str, FileMark] = field(default_factory=dict)
    current: FileInFlight | None = None

    def to_json(self) -> dict[str, Any]:
        current = self.current
        return {
            "done": {name: [mark.size, mark.mtime] for name, mark in sorted(self.done.items())},
            "current": None
            if current is None
            else {"name": current.name, "size": current.mark.size, "mtime": current.mark.mtime, "rows": current.rows},
        }

    @classmethod
    def from_json(cls, data: Any) -> FilesPosition:
        """The position stored by `to_json`; ValueError when it is anything else."""
        if not isinstance(data, dict) or not isinstance(data.get("done"), dict):
            raise ValueError("files: not an object with done")
        done: dict[str, FileMark] = {}
        for name, mark in data["done"].items():
            if not (isinstance(mark, list) and len(mark) == 2 and all(_count(value) for value in mark)):
                raise ValueError(f"files.done[{name!r}]: not [size, mtime]")
            done[name] = FileMark(mark[0], mark[1])
        raw = data.get("current")
        if raw is None:
            return cls(done)
        if not (
            isinstance(raw, dict)
            and isinstance(raw.get("name"), str)
            and all(_count(raw.get(key)) for key in ("size", "mtime", "rows"))
        ):
            raise ValueError("files.current: not {name, size, mtime, rows}")
        return cls(done, FileInFlight(raw["name"], FileMark(raw["size"], raw["mtime"]), raw["rows"]))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class StoredOffset:
    feed: str
    last_id: int
    committed_at: str | None = None
    #: Only for a feed collected from files; None keeps the stored value exactly as it always was.
    files: FilesPosition | None = None

    def encode(self) -> bytes:
        value: dict[str, Any] = {"feed": self.feed, "last_id": self.last_id, "committed_at": self.committed_at}
        if self.files is not None:
            value["files"] = self.files.to_json()
        return orjson.dumps(value)

    @classmethod
    def decode(cls, value: bytes) -> StoredOffset:
        data: Any = orjson.loads(value)
        last_id = data.get("last_id") if isinstance(data, dict) else None
        if not isinstance(last_id, int) or not _count(last_id):
            raise ValueError(f"not a stored offset: {value[:100]!r}")
        files = FilesPosition.from_json(data["files"]) if data.get("files") is not None else None
        return cls(feed=str(data.get("feed")), last_id=last_id, committed_at=data.get("committed_at"), files=files)

    @classmethod
    def now(cls, feed: str, last_id: int, files: FilesPosition | None = None) -> StoredOffset:
        return cls(feed, last_id, utc_now_stamp(), files)


def is_offset_key(key: str) -> bool:
    """Feed offsets are keyed by the feed name. Other state in the topic (a backfill run's progress) has a
    '/' in its key, which no feed name can hold."""
    return "/" not in key


async def read_state(
    kafka: KafkaSettings,
    topic: str,
    keep: Callable[[str], bool],
    *,
    timeout: float = 60.0,
    settle_seconds: float = 0.0,
) -> dict[str, bytes]:
    """The latest committed value of every key in the state topic that `keep` accepts (tombstones remove).
    A feed's writer fences its older ones before the feed's state is read, which completes their last
    transaction; a reader without that fence can wait `settle_seconds` for markers (see readback)."""
    values: dict[str, bytes] = {}

    async def read() -> None:
        async for records in committed_records(kafka, [topic], settle_seconds=settle_seconds):
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


async def read_offsets(
    kafka: KafkaSettings, topic: str, *, timeout: float = 60.0, settle_seconds: float = 0.0
) -> dict[str, StoredOffset]:
    """The latest committed offset of every feed in the state topic."""
    values = await read_state(kafka, topic, is_offset_key, timeout=timeout, settle_seconds=settle_seconds)
    return {key: StoredOffset.decode(value) for key, value in values.items()}
