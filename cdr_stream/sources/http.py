"""The billing feed source: ask for the rows after an ID, get them back in chunks.

The network sits behind one narrow seam, `FeedTransport`: the real one is aiohttp, tests pass their own.
Credentials travel only in the POST form body; no URL, log line or exception carries them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol

import aiohttp

from cdr_stream.answers.order import READ_ROWS, OnRun, OrderedRows, TempSpace, ordered_rows
from cdr_stream.answers.parse import answer_row_chunks, describe_body
from cdr_stream.config import FeedSettings
from cdr_stream.errors import AnswerFormatError, FailureReason, FeedAuthError, FeedError, SpillError
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.ops.secrets import SecretMask
from cdr_stream.ops.tls import tls_context
from cdr_stream.sources.base import Batch, SourceContext, SourceEvents

log = logging.getLogger(__name__)

#: An unfinished answer must bring at least this much in every `read_timeout_seconds` spent waiting on it.
MIN_PROGRESS_BYTES: Final = 16 * 1024


class FeedResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at the end."""


class FeedTransport(Protocol):
    def post(self, url: str, form: Mapping[str, str]) -> AbstractAsyncContextManager[FeedResponse]:
        """Send `form` as an application/x-www-form-urlencoded POST body to `url`."""

    async def close(self) -> None: ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._content = response.content

    async def read(self, size: int) -> bytes:
        return await self._content.read(size)


class AiohttpTransport:
    """The real transport: one aiohttp session per feed, TLS verified (with an optional CA bundle; the
    context is shared by the feeds that name the same one)."""

    def __init__(self, settings: FeedSettings) -> None:
        context = tls_context(settings.ca_file)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_seconds, sock_read=settings.read_timeout_seconds
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(ssl=context, limit=1),
            headers={"User-Agent": "cdr-stream"},
            raise_for_status=False,
        )

    @asynccontextmanager
    async def post(self, url: str, form: Mapping[str, str]) -> AsyncIterator[FeedResponse]:
        async with self._session.post(url, data=dict(form)) as response:
            yield _AiohttpResponse(response)

    async def close(self) -> None:
        await self._session.close()


class _ProgressGuard:
    """Fails an answer that trickles: fewer than MIN_PROGRESS_BYTES in `window` seconds of waiting on it.

    aiohttp's read timeout restarts with every byte, so a feed dripping a byte now and then would keep an
    answer that never ends alive for ever. Only the time spent waiting on the feed counts, not the time
    the caller spends committing between reads, so a huge answer streamed at any sane rate passes.
    """

    def __init__(self, read: Callable[[int], Awaitable[bytes]], window: float) -> None:
        self._read = read
        self._window = window
        self._waited = 0.0
        self._received = 0

    async def read(self, size: int) -> bytes:
        while True:
            started = time.monotonic()
            deadline = asyncio.timeout(self._window - self._waited)
            piece: bytes | None = None
            try:
                async with deadline:
                    piece = await self._read(size)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the transport's own timeout
            self._waited += time.monotonic() - started
            if piece == b"":
                return piece  # the end of the answer
            self._received += len(piece or b"")
            if self._waited >= self._window:
                if self._received < MIN_PROGRESS_BYTES:
                    raise FeedError(
                        FailureReason.TIMEOUT,
                        f"the answer is stuck: {self._received} bytes in {self._window:g} s (an unfinished answer "
                        f"must bring at least {MIN_PROGRESS_BYTES} bytes in read_timeout_seconds)",
                    )
                self._waited, self._received = 0.0, 0
            if piece is not None:
                return piece


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class FeedWindow:
    """The contract's `date` / `hour` filter: the rows of one provider-local day, or of one hour of it."""

    day: date
    hour: int | None = None

    def __post_init__(self) -> None:
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ValueError(f"hour must be 0 to 23, not {self.hour}")


class FeedClient:
    """Queries one configured feed."""

    def __init__(
        self, settings: FeedSettings, transport: FeedTransport | None = None, space: TempSpace | None = None
    ) -> None:
        self.settings = settings
        self._transport = transport or AiohttpTransport(settings)
        self._space = space or TempSpace()

    def form(self, from_id: int, window: FeedWindow | None = None) -> dict[str, str]:
        """The POST form; optional parameters only when configured (not every deployment knows them)."""
        settings = self.settings
        form = {
            "login": settings.login,
            "password": settings.secret,
            "fromid": str(from_id),
            "format": settings.format,
        }
        if window is not None:
            form["date"] = window.day.isoformat()
            if window.hour is not None:
                form["hour"] = str(window.hour)
        if settings.callsonly:
            form["callsonly"] = "1"
        if settings.servicesonly:
            form["servicesonly"] = "1"
        return form

    async def ordered_chunks(
        self, from_id: int, *, chunk_rows: int, window: FeedWindow | None = None, on_run: OnRun | None = None
    ) -> AsyncGenerator[OrderedRows, None]:
        """Ask for the rows with an ID above `from_id` (within `window`, if given); once the whole answer is
        in, yield its new rows in ID order, in chunks (see `cdr_stream.answers.order`).

        Raises FeedError as `row_chunks` does, and with reason "spill" when the answer cannot be sorted.
        """
        rows = ordered_rows(
            self.row_chunks(from_id, chunk_rows=READ_ROWS, window=window, prepare=True),
            floor=from_id,
            chunk_rows=chunk_rows,
            space=self._space,
            feed=self.settings.name,
            on_run=on_run,
        )
        try:
            async with aclosing(rows):
                async for chunk in rows:
                    yield chunk
                    del chunk  # not held while the next chunk is merged
        except SpillError as exc:
            raise FeedError(exc.reason, str(exc)) from None

    async def row_chunks(
        self, from_id: int, *, chunk_rows: int, window: FeedWindow | None = None, prepare: bool = False
    ) -> AsyncGenerator[list[Any], None]:
        """Ask for the rows with an ID above `from_id` (within `window`, if given); yield them in chunks as
        they arrive, in the answer's order (with `prepare`, JSON rows may come prepared: see
        `cdr_stream.records.page`).

        Raises FeedError (or FeedAuthError) with a fixed `reason` for every way the query can fail.
        """
        settings = self.settings
        try:
            async with AsyncExitStack() as stack:
                # aiohttp's timeouts restart with every byte: the whole wait for the headers is bounded here.
                async with asyncio.timeout(settings.connect_timeout_seconds + settings.read_timeout_seconds):
                    response = await stack.enter_async_context(
                        self._transport.post(settings.url, self.form(from_id, window))
                    )
                await self._check_status(response)
                body = _ProgressGuard(response.read, settings.read_timeout_seconds)
                chunks = await stack.enter_async_context(
                    aclosing(answer_row_chunks(body.read, fmt=settings.format, chunk_rows=chunk_rows, prepare=prepare))
                )
                async for chunk in chunks:
                    yield chunk
                    del chunk  # not held while the next chunk is parsed
        except FeedError:
            raise
        except AnswerFormatError as exc:
            message = self._scrub(f"the feed answered with something else than rows: {exc}")
            raise FeedError(exc.reason, message) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise FeedError(FailureReason.TIMEOUT, "the feed did not answer in time") from None
        except aiohttp.ClientPayloadError as exc:
            raise FeedError(FailureReason.TRUNCATED, f"the answer was cut off: {type(exc).__name__}") from None
        except (aiohttp.ClientError, OSError) as exc:
            # str(exc) of a connection error names the host and port, never the form body.
            raise FeedError(FailureReason.CONNECTION, self._scrub(f"cannot reach the feed: {exc}")) from None

    async def _check_status(self, response: FeedResponse) -> None:
        if response.status == 200:
            return
        snippet = self._scrub(describe_body(await response.read(200)))
        if response.status in (401, 403):
            raise FeedAuthError(
                FailureReason.AUTH,
                f"the feed refused login {self.settings.login!r} (HTTP {response.status}, {snippet}); "
                "check the login and the password secret",
            )
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if response.status == 429:
            raise FeedError(
                FailureReason.RATE_LIMITED,
                f"the feed asked to slow down (HTTP 429, {snippet})",
                retry_after=retry_after,
            )
        reason = FailureReason.HTTP_5XX if response.status >= 500 else FailureReason.HTTP_4XX
        raise FeedError(reason, f"the feed answered HTTP {response.status}: {snippet}", retry_after=retry_after)

    def _scrub(self, text: str) -> str:
        # A feed error page may echo the request back; never let the password through, in any form, nor
        # the start of it where describe_body() cut a quoted snippet short ("...").
        return SecretMask([self.settings.secret])(text, cut_short=True)

    async def close(self) -> None:
        await self._transport.close()


class HttpSource:
    """The billing feed web service: one query from the stored highest ID, its answer in ID order, in chunks."""

    def __init__(self, client: FeedClient, chunk_rows: int, events: SourceEvents | None = None) -> None:
        self.client = client
        self._chunk_rows = chunk_rows
        self._events = events

    @classmethod
    def open(cls, feed: FeedSettings, context: SourceContext) -> HttpSource:
        transport = context.transport_factory(feed) if context.transport_factory else None
        return cls(FeedClient(feed, transport, context.space), feed.max_rows_per_transaction, context.events)

    def _on_run(self, rows: int, disk_bytes: int) -> None:
        if self._events is not None:
            self._events.answer_sorting(self.client.settings.name, rows=rows, disk_bytes=disk_bytes)

    async def batches(self, state: StoredOffset) -> AsyncGenerator[Batch, None]:
        chunks = self.client.ordered_chunks(state.last_id, chunk_rows=self._chunk_rows, on_run=self._on_run)
        async for chunk in chunks:
            yield Batch(chunk.rows, dropped_seen=chunk.dropped_seen, dropped_duplicate=chunk.dropped_duplicate)
            del chunk  # its rows are the caller's to let go of once committed

    async def close(self) -> None:
        await self.client.close()
