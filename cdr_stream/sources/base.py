"""The source contract: what the poll loop asks of a place rows come from, and the registry of sources.

A source turns one poll into batches of rows in ID order, each batch carrying the source's position once
it is committed. It raises FeedError (retriable or not) for every way a poll can fail; the loop does the
rest. To add a source: a module here with a class that follows `Source` and has an `open` classmethod,
its name in `SourceName` and `SOURCES`, and its failure reasons in `errors.FailureReason`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from cdr_stream.answers.order import TempSpace
    from cdr_stream.config import FeedSettings
    from cdr_stream.errors import FileAnomaly
    from cdr_stream.kafka.state import FilesPosition, StoredOffset
    from cdr_stream.sources.http import FeedTransport

#: The `source` setting of a feed.
SourceName = Literal["http", "sftp"]

#: Where each source's class lives ("module:Class"), imported when a feed needs it: the SFTP client
#: (asyncssh and its crypto) loads only in a process that collects files.
SOURCES: Final[dict[SourceName, str]] = {
    "http": "cdr_stream.sources.http:HttpSource",
    "sftp": "cdr_stream.sources.sftp:SftpSource",
}


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one poll, committed together, and the source's position once they are committed.

    `files` is the whole position of a file source after these rows; None for the web service, whose
    position is the highest ID alone.
    """

    rows: list[Any]
    files: FilesPosition | None = None
    #: Rows of the answer dropped before these (re-sent at or below the stored offset, or repeated).
    dropped_seen: int = 0
    dropped_duplicate: int = 0


class SourceEvents(Protocol):
    """What a source tells while it reads (the poll loop's observers implement it)."""

    def file_anomaly(self, feed: str, *, name: str, reason: FileAnomaly, message: str) -> None:
        """A file source met a file it will not (re-)publish as listed: changed after commit, renamed..."""

    def answer_sorting(self, feed: str, *, rows: int, disk_bytes: int) -> None:
        """An answer too large to sort in memory is being sorted on disk: `rows` spilled so far."""


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What every source of a process shares: where large answers are sorted, who hears its events, and
    (for tests) the network seam of the web service."""

    space: TempSpace
    events: SourceEvents
    transport_factory: Callable[[FeedSettings], FeedTransport] | None = field(default=None)


class Source(Protocol):
    """Where a feed's rows come from."""

    def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        """One poll: the rows after the committed `state`, batch by batch (at most one batch held at once)."""

    async def close(self) -> None: ...


class SourceClass(Protocol):
    def open(self, feed: FeedSettings, context: SourceContext) -> Source: ...


def open_source(feed: FeedSettings, context: SourceContext) -> Source:
    """The feed's source, of the class its `source` setting names."""
    module, _, name = SOURCES[feed.source].partition(":")
    source_class: SourceClass = getattr(importlib.import_module(module), name)
    return source_class.open(feed, context)
