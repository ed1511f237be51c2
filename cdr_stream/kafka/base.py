"""The writer contract: what the loops ask of the transactional sink (`writer.TransactionalWriter`).

Tests of the loops drive them with a writer of their own through this seam, without a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cdr_stream.kafka.state import FilesPosition
    from cdr_stream.records.processor import ProcessedChunk

#: Headers added to every record of a transaction.
Headers = Sequence[tuple[str, bytes]]


class Writer(Protocol):
    """Commits chunks of records and a stored position together, all or nothing.

    `start()` fences older writers with the same transactional id. `commit*` raise WriteError when the
    transaction did not commit, CommitUncertain when it may have, and WriterFenced when another process
    took the transactional id over.
    """

    transactional_id: str

    @property
    def started(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Release the producer; safe when not started."""

    async def commit(self, chunk: ProcessedChunk, last_id: int, *, files: FilesPosition | None = None) -> None:
        """Publish the chunk's events and dead letters and store the feed's offset `last_id` (and `files`)."""

    async def commit_with_state(
        self, chunk: ProcessedChunk, state_key: str, state_value: bytes, *, headers: Headers = ()
    ) -> None:
        """Publish the chunk (each record with `headers` added) and store `state_value` under `state_key`."""
