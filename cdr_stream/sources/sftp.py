"""The SFTP source: the provider's CDR files, downloaded as a stream and published row by row.

One poll connects, lists the directory, waits for files still being written to settle, and reads the
files to collect in file order (`cdr_files.plan`), each parsed in the file's format and put in ID order.
Every batch carries the whole files position (files committed, and the rows committed of the file in
flight), so a crash resumes exactly after the last committed row. The host key is always checked
against the configured known_hosts file.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import asyncssh

from cdr_stream.answers.order import READ_ROWS, OrderedRows, TempSpace, ordered_rows
from cdr_stream.answers.parse import answer_row_chunks
from cdr_stream.config import FeedSettings, SftpSettings
from cdr_stream.errors import (
    AnswerFormatError,
    FailureReason,
    FeedAuthError,
    FeedError,
    FeedRefused,
    FileAnomaly,
    SpillError,
)
from cdr_stream.kafka.state import FileInFlight, FileMark, FilesPosition, StoredOffset
from cdr_stream.ops.secrets import SecretMask
from cdr_stream.sources.base import Batch, SourceContext, SourceEvents
from cdr_stream.sources.files import (
    Anomaly,
    Plan,
    RemoteFile,
    SettleTracker,
    ToRead,
    cdr_files,
    not_cdr_files,
    plan,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class SftpSource:
    """Collects one feed's CDR files over SFTP. Connects once per poll; holds no connection between polls."""

    def __init__(
        self,
        feed: FeedSettings,
        observer: SourceEvents,
        *,
        clock: Callable[[], float] = time.monotonic,
        space: TempSpace | None = None,
    ) -> None:
        if feed.sftp is None:
            raise ValueError(f"feed {feed.name} has no sftp settings")
        self._feed = feed
        self._settings: SftpSettings = feed.sftp
        self._observer = observer
        self._space = space or TempSpace()
        self._clock = clock
        self._pattern = re.compile(self._settings.file_pattern)
        self._settle = SettleTracker(self._settings.settle_seconds)
        self._reported: set[tuple[str, str, str]] = set()

    async def close(self) -> None:
        """Nothing to release: each poll closes its own connection."""

    async def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        try:
            async with self._client() as sftp:
                async for batch in self._poll(sftp, state.files or FilesPosition()):
                    yield batch
        except FeedError:
            raise
        except asyncssh.HostKeyNotVerifiable:
            raise FeedRefused(
                FailureReason.HOST_KEY,
                f"the SFTP server {self._where} presented a host key that known_hosts_file "
                f"{str(self._settings.known_hosts_file)!r} does not hold for it; refusing to connect. Check the "
                "server's key fingerprint with the provider before changing known_hosts_file",
            ) from None
        except asyncssh.PermissionDenied:
            raise FeedAuthError(
                FailureReason.AUTH,
                f"the SFTP server {self._where} refused user {self._settings.username!r}; "
                "check the password or the private key",
            ) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise FeedRefused(
                FailureReason.PRIVATE_KEY,
                self._scrub(f"private_key_file cannot be used: {exc}; check it and its passphrase"),
            ) from None
        except asyncssh.SFTPError as exc:
            raise FeedError(
                FailureReason.SFTP, self._scrub(f"the SFTP server {self._where} answered: {exc.reason}")
            ) from None
        except (asyncssh.Error, OSError) as exc:
            message = str(exc) or type(exc).__name__
            raise FeedError(
                FailureReason.CONNECTION, self._scrub(f"cannot reach the SFTP server {self._where}: {message}")
            ) from None
        except TimeoutError:
            raise FeedError(FailureReason.TIMEOUT, f"the SFTP server {self._where} did not answer in time") from None

    @classmethod
    def open(cls, feed: FeedSettings, context: SourceContext) -> SftpSource:
        return cls(feed, context.events, space=context.space)

    @property
    def _where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _scrub(self, text: str) -> str:
        return SecretMask(s for s in (self._settings.password_secret, self._settings.passphrase_secret) if s)(text)

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[asyncssh.SFTPClient]:
        settings = self._settings
        key = settings.private_key_file
        async with (
            asyncssh.connect(
                settings.host,
                settings.port,
                username=settings.username,
                password=settings.password_secret,
                # Only the configured key: never ~/.ssh, an agent or the user's ssh config.
                client_keys=[str(key)] if key is not None else None,
                passphrase=settings.passphrase_secret,
                agent_path=None,
                config=None,
                known_hosts=str(settings.known_hosts_file),
                connect_timeout=self._feed.connect_timeout_seconds,
            ) as connection,
            connection.start_sftp_client() as sftp,
        ):
            yield sftp

    async def _timed(self, step: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(step, self._feed.read_timeout_seconds)

    async def _list(self, sftp: asyncssh.SFTPClient) -> list[RemoteFile]:
        names = await self._timed(sftp.readdir(self._settings.directory))
        listing = []
        for entry in names:
            attrs = entry.attrs
            regular = stat.S_ISREG(attrs.permissions) if attrs.permissions is not None else attrs.type == 1
            if regular and attrs.size is not None and attrs.mtime is not None:
                listing.append((str(entry.filename), FileMark(int(attrs.size), int(attrs.mtime))))
        for name in not_cdr_files(listing, self._pattern):
            self._report_once(
                Anomaly(
                    name,
                    FileAnomaly.NOT_CDR_FILE,
                    f"file {name} in {self._settings.directory} is not collected: its name does not match "
                    "file_pattern (a CDR file's name carries the date of its period)",
                )
            )
        files = cdr_files(listing, self._pattern)
        self._settle.observe(files, self._clock())
        return files

    async def _plan(self, sftp: asyncssh.SFTPClient, position: FilesPosition) -> tuple[Plan, list[ToRead]]:
        """The plan, and the files of it ready to read: a prefix that stops at a file still being written.

        A file not settled at the first listing gets a second listing after the settle time.
        """
        for listing in (1, 2):
            planned = plan(await self._list(sftp), position)
            now = self._clock()
            ready: list[ToRead] = []
            wait: float | None = None
            for item in planned.to_read:
                wait = None if item.resumed else self._settle.wait_needed(item.file, now)
                if wait is not None:
                    break
                ready.append(item)
            if wait is None or listing == 2:
                if wait is not None:
                    log.info(
                        "feed %s: file %s is still being written; it is read once it stops changing",
                        self._feed.name,
                        planned.to_read[len(ready)].file.name,
                        extra={"feed": self._feed.name},
                    )
                return planned, ready
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _report(self, planned: Plan) -> None:
        for anomaly in planned.anomalies:
            self._report_once(anomaly)

    def _report_once(self, anomaly: Anomaly) -> None:
        """Each anomaly once per process (its message names the sizes and mtimes involved), not every poll."""
        key = (anomaly.name, anomaly.reason, anomaly.message)
        if key not in self._reported:
            self._reported.add(key)
            self._observer.file_anomaly(
                self._feed.name, name=anomaly.name, reason=anomaly.reason, message=anomaly.message
            )

    async def _poll(self, sftp: asyncssh.SFTPClient, position: FilesPosition) -> AsyncIterator[Batch]:
        planned, ready = await self._plan(sftp, position)
        self._report(planned)
        done = dict(planned.done)
        if not ready and planned.position() != position:
            # Renamed files taken as collected, or collected files gone from the server: store that alone.
            yield Batch([], planned.position())
            return
        for item in ready:
            rows = 0
            async for batch in self._read_file(sftp, item, done):
                rows += len(batch.rows)
                yield batch
            done[item.file.name] = item.file.mark
            log.info(
                "feed %s: file %s collected (%d rows read)",
                self._feed.name,
                item.file.name,
                rows,
                extra={"feed": self._feed.name, "file": item.file.name},
            )

    async def _read_file(
        self, sftp: asyncssh.SFTPClient, item: ToRead, done: dict[str, FileMark]
    ) -> AsyncIterator[Batch]:
        """The file's rows in ID order after `item.skip_rows` of them, in batches; the last one marks the
        file as committed.

        The whole file is read (and sorted, on disk if large) before its first batch: its rows need not
        come in ID order. One batch is held back until the next is ready, so the file's last rows and its
        completion are committed in one transaction.
        """
        remote = item.file
        path = posixpath.join(self._settings.directory, remote.name)
        consumed = 0  # rows of the file in ID order, skipped ones included
        held = OrderedRows()
        async with await self._timed(sftp.open(path, "rb")) as handle:
            attrs = await self._timed(handle.stat())
            if FileMark(int(attrs.size or 0), int(attrs.mtime or 0)) != remote.mark:
                raise FeedError(
                    FailureReason.FILE_CHANGED, f"file {remote.name} changed between its listing and its opening"
                )
            ordered = ordered_rows(
                self._file_rows(handle, remote),
                floor=0,  # the poller drops what is at or below the feed's offset
                chunk_rows=self._feed.max_rows_per_transaction,
                space=self._space,
                feed=self._feed.name,
                on_run=self._on_run,
            )
            first = True
            try:
                async with aclosing(ordered):
                    async for chunk in ordered:
                        if not first:
                            yield _batch(held, self._in_flight(done, remote, consumed))
                        first = False
                        skip = min(len(chunk.rows), max(0, item.skip_rows - consumed))
                        consumed += len(chunk.rows)
                        # A chunk resumed into was reported (with what it dropped) before the restart.
                        held = chunk if not skip else OrderedRows(chunk.rows[skip:])
            except SpillError as exc:
                raise FeedError(exc.reason, str(exc)) from None
        yield _batch(held, FilesPosition({**done, remote.name: remote.mark}))

    async def _file_rows(self, handle: asyncssh.SFTPClientFile, remote: RemoteFile) -> AsyncGenerator[list[Any], None]:
        """The rows of an open file, in its order, checked to be the whole file as listed."""
        received = 0

        async def read(size: int) -> bytes:
            nonlocal received
            piece: bytes = await self._timed(handle.read(size))
            received += len(piece)
            return piece

        # Prepared rows (cdr_stream.records.page): only the poller's processor reads them.
        chunks = answer_row_chunks(read, fmt=self._feed.format, chunk_rows=READ_ROWS, prepare=True)
        try:
            async with aclosing(chunks):
                async for rows in chunks:
                    yield rows
                    del rows  # not held while the next chunk is parsed
        except AnswerFormatError as exc:
            raise FeedError(
                exc.reason, f"file {remote.name} does not hold what format {self._feed.format!r} promises: {exc}"
            ) from None
        if received != remote.mark.size:
            raise FeedError(
                FailureReason.FILE_CHANGED,
                f"file {remote.name} changed while it was read ({received} bytes read, {remote.mark.size} listed)",
            )

    def _on_run(self, rows: int, disk_bytes: int) -> None:
        self._observer.answer_sorting(self._feed.name, rows=rows, disk_bytes=disk_bytes)

    @staticmethod
    def _in_flight(done: dict[str, FileMark], remote: RemoteFile, rows: int) -> FilesPosition:
        return FilesPosition(dict(done), FileInFlight(remote.name, remote.mark, rows))


def _batch(rows: OrderedRows, files: FilesPosition) -> Batch:
    return Batch(rows.rows, files, dropped_seen=rows.dropped_seen, dropped_duplicate=rows.dropped_duplicate)
