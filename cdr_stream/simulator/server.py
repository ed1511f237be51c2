"""An aiohttp server that answers like the provider's billing feed, with faults on demand."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import logging
import random
import re
import socket
import ssl
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from cdr_stream.simulator.formats import CONTENT_TYPES, FORMATS, NumbersAs, RowCache, framing
from cdr_stream.simulator.generator import (
    BASE_DATE,
    NZ,
    FeedGenerator,
    FeedRow,
    GeneratorConfig,
    InvalidKind,
    mix64,
)

log = logging.getLogger(__name__)

FEED_PATH: Final = "/billingfeed.php"
STATS_PATH: Final = "/_sim/stats"
CHUNK_ROWS: Final = 1000
_RESEND_MAX: Final = 5
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
FAULT_FIELDS: Final = frozenset(
    {
        "error_5xx_rate",
        "rate_limit_rate",
        "retry_after_seconds",
        "latency_ms",
        "truncate_rate",
        "html_error_rate",
        "duplicate_rate",
        "out_of_order",
        "resend_rate",
        "reset_rate",
        "drip_rate",
        "drip_interval_ms",
        "empty_body_rate",
        "not_array_rate",
        "oversize_every",
        "oversize_bytes",
    }
)
# Stopping waits this long for answers still in flight (a drip or a long latency) before cutting them.
_SHUTDOWN_SECONDS: Final = 1.0
_PHP_ERROR_PAGE: Final = (
    b"<br />\n<b>Warning</b>:  mysqli_connect(): (HY000/2002): Connection refused in "
    b"<b>/var/www/html/billingfeed.php</b> on line <b>14</b><br />\n"
    b"<html><body><h1>Database error</h1><p>Please try again later.</p></body></html>\n"
)


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Every knob of a simulator. Only `password` has no default; it never shows in repr."""

    password: str = field(repr=False)
    login: str = "demo"
    host: str = "127.0.0.1"
    port: int = 0
    # Data
    records: int = 1000
    first_id: int = 1
    rate: float = 0.0
    page_size: int = 0
    numbers_as: NumbersAs = "number"
    seed: int = 1
    accounts: int = 50
    invalid_rate: float = 0.0
    # What PHP/MySQL feeds send, as shares of all records; every one is a valid billing record.
    account_fee_rate: float = 0.01
    credit_rate: float = 0.005
    zero_bill_date_rate: float = 0.01
    whole_float_rate: float = 0.02
    offset_spelling_rate: float = 0.02
    preload: bool = False
    base_date: date = BASE_DATE
    window_days: float = 7.0
    # Faults: probabilities per request unless said otherwise
    error_5xx_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = 1
    latency_ms: float = 0.0
    truncate_rate: float = 0.0
    html_error_rate: float = 0.0
    duplicate_rate: float = 0.0
    out_of_order: bool = False
    resend_rate: float = 0.0
    reset_rate: float = 0.0  # the connection is reset (TCP RST) instead of an answer
    drip_rate: float = 0.0  # the answer trickles out one byte per drip_interval_ms
    drip_interval_ms: float = 200.0
    empty_body_rate: float = 0.0  # HTTP 200 with an empty body
    not_array_rate: float = 0.0  # HTTP 200 with a JSON object instead of the array of rows
    # Per row, not per request: every record whose ID is a multiple of oversize_every carries an extra
    # field of oversize_bytes (JSON answers only), like a provider's runaway free-text column.
    oversize_every: int = 0
    oversize_bytes: int = 1_000_000
    # Transport: serve https with this context (its certificate chain loaded) instead of http.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What a test may check about one feed request. Never the password itself."""

    method: str
    query_keys: tuple[str, ...]
    form_keys: tuple[str, ...]
    password_in_query: bool
    password_in_body: bool
    fromid: int | None
    rows: int
    status: int
    fault: str | None
    #: When the request arrived (the event loop's clock, in seconds).
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class FeedQuery:
    fromid: int
    fmt: str
    date: date | None
    hour: int | None
    calls_only: bool
    services_only: bool

    @property
    def filtered(self) -> bool:
        return self.date is not None or self.calls_only or self.services_only


class QueryError(ValueError):
    """A parameter the feed rejects with HTTP 400."""


def parse_query(params: Mapping[str, str]) -> FeedQuery:
    raw_fromid = params.get("fromid", "").strip()
    if not raw_fromid:
        raise QueryError("Error: fromid is required")
    if not re.fullmatch(r"-?\d+", raw_fromid):
        raise QueryError("Error: fromid must be a whole number")
    fmt = params.get("format", "").strip().lower() or "csv"
    if fmt not in FORMATS:
        raise QueryError("Error: format must be one of csv, txt, pipe, json")
    day = None
    if raw_date := params.get("date", "").strip():
        try:
            day = date.fromisoformat(raw_date) if _DATE_RE.fullmatch(raw_date) else None
        except ValueError:
            day = None
        if day is None:
            raise QueryError("Error: date must be YYYY-MM-DD")
    hour = None
    if raw_hour := params.get("hour", "").strip():
        if not raw_hour.isdigit() or not 0 <= int(raw_hour) <= 23:
            raise QueryError("Error: hour must be 0 to 23")
        if day is None:
            raise QueryError("Error: hour needs date")
        hour = int(raw_hour)
    return FeedQuery(
        fromid=int(raw_fromid),
        fmt=fmt,
        date=day,
        hour=hour,
        calls_only=params.get("callsonly") == "1",
        services_only=params.get("servicesonly") == "1",
    )


@dataclass(slots=True)
class _Plan:
    """The fault draws for one request, taken up front so a run's faults replay for the same seed."""

    error_5xx: float
    rate_limit: float
    html_error: float
    truncate: float
    duplicate: float
    resend: float
    rng: random.Random
    # Drawn from a second stream, so adding them left the faults of every existing seed unchanged.
    reset: float = 1.0
    drip: float = 1.0
    empty_body: float = 1.0
    not_array: float = 1.0


class FeedSimulator:
    """The billing feed on a local port. Use `async with FeedSimulator(config) as sim:`."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.generator = FeedGenerator(
            GeneratorConfig(
                seed=config.seed,
                first_id=config.first_id,
                accounts=config.accounts,
                invalid_rate=config.invalid_rate,
                account_fee_rate=config.account_fee_rate,
                credit_rate=config.credit_rate,
                zero_bill_date_rate=config.zero_bill_date_rate,
                whole_float_rate=config.whole_float_rate,
                offset_spelling_rate=config.offset_spelling_rate,
                base_date=config.base_date,
                window_days=config.window_days,
                # Without up-front records, a live-only feed still gets a realistic pace.
                span_records=config.records or 10_000,
            )
        )
        self.cache = RowCache(self.generator, config.numbers_as)
        self.max_id = config.first_id + config.records - 1
        self.requests: list[RequestRecord] = []
        self.rows_served = 0
        self._fault_rng = random.Random(mix64(config.seed ^ 0xFA17))
        self._more_faults_rng = random.Random(mix64(config.seed ^ 0xFA18))
        self._runner: web.AppRunner | None = None
        self._live_task: asyncio.Task[None] | None = None
        self.url = ""

    # Lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        if self.config.preload:
            self.cache.preload(self.max_id)
        app = web.Application()
        app.router.add_route("GET", FEED_PATH, self._handle_feed)
        app.router.add_route("POST", FEED_PATH, self._handle_feed)
        app.router.add_route("GET", STATS_PATH, self._handle_stats)
        # No access log: its request line would carry a password sent by GET.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self.config.ssl_context).start()
        host, port = self._runner.addresses[0][:2]
        scheme = "https" if self.config.ssl_context else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{FEED_PATH}"
        if self.config.rate > 0:
            self._live_task = asyncio.create_task(self._grow())

    async def stop(self) -> None:
        if self._live_task is not None:
            self._live_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live_task
            self._live_task = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # Data access for tests

    def ids(self) -> range:
        return range(self.config.first_id, self.max_id + 1)

    def record(self, record_id: int) -> FeedRow:
        if record_id not in self.ids():
            raise KeyError(record_id)
        return self.generator.row(record_id)

    def invalid_kind(self, record_id: int) -> InvalidKind | None:
        return self.generator.invalid_kind(record_id)

    def is_invalid(self, record_id: int) -> bool:
        return self.generator.is_invalid(record_id)

    def add_records(self, count: int) -> int:
        """Make `count` more records available; returns the new max_id."""
        self.max_id += max(0, count)
        return self.max_id

    def set_faults(self, **changes: float | bool) -> None:
        """Change fault knobs while running, e.g. set_faults(error_5xx_rate=1.0)."""
        unknown = set(changes) - FAULT_FIELDS
        if unknown:
            raise TypeError(f"not fault settings: {sorted(unknown)}")
        updates: dict[str, Any] = dict(changes)
        self.config = replace(self.config, **updates)

    async def _grow(self) -> None:
        loop = asyncio.get_running_loop()
        started, added = loop.time(), 0
        while True:
            await asyncio.sleep(min(0.1, 1 / self.config.rate))
            # Count from the clock, so a slow loop never lowers the rate.
            due = int((loop.time() - started) * self.config.rate)
            self.add_records(due - added)
            added = due

    # HTTP

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "max_id": self.max_id,
                "records": len(self.ids()),
                "requests": len(self.requests),
                "rows_served": self.rows_served,
            }
        )

    async def _handle_feed(self, request: web.Request) -> web.StreamResponse:
        config = self.config
        arrived = asyncio.get_running_loop().time()
        plan = self._draw_plan()
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        query = {key: value for key, value in request.query.items()}
        form: dict[str, str] = {}
        if request.method == "POST":
            try:
                form = {key: value for key, value in (await request.post()).items() if isinstance(value, str)}
            except ConnectionResetError:
                return web.Response()  # the client went away while the answer was delayed; nobody reads it
        params = query | form  # POST wins
        raw_fromid = params.get("fromid", "").strip()
        fromid = int(raw_fromid) if re.fullmatch(r"-?\d+", raw_fromid) else None

        def note(status: int, rows: int = 0, fault: str | None = None) -> None:
            self.requests.append(
                RequestRecord(
                    method=request.method,
                    query_keys=tuple(query),
                    form_keys=tuple(form),
                    password_in_query="password" in query,
                    password_in_body="password" in form,
                    fromid=fromid,
                    rows=rows,
                    status=status,
                    fault=fault,
                    at=arrived,
                )
            )
            self.rows_served += rows
            log.debug("feed %s fromid=%s rows=%d status=%d", request.method, fromid, rows, status)

        if plan.reset < config.reset_rate:
            note(0, fault="reset")
            _reset(request)
            return web.Response()  # never sent: the connection is gone
        if plan.error_5xx < config.error_5xx_rate:
            status = plan.rng.choice((500, 502, 503))
            note(status, fault="error_5xx")
            body = f"<html><body><h1>{status} Server Error</h1></body></html>\n"
            return web.Response(status=status, text=body, content_type="text/html")
        if plan.rate_limit < config.rate_limit_rate:
            note(429, fault="rate_limit")
            return web.Response(
                status=429,
                text="Error: too many requests\n",
                headers={"Retry-After": str(config.retry_after_seconds)},
            )
        if not (_same(params.get("login"), config.login) and _same(params.get("password"), config.password)):
            note(401)
            return web.Response(status=401, text="Error: invalid login or password\n")
        try:
            feed_query = parse_query(params)
        except QueryError as error:
            note(400)
            return web.Response(status=400, text=f"{error}\n")
        if plan.html_error < config.html_error_rate:
            note(200, fault="html_error")
            return web.Response(body=_PHP_ERROR_PAGE, content_type="text/html")
        if plan.empty_body < config.empty_body_rate:
            note(200, fault="empty_body")
            return web.Response(body=b"", content_type=CONTENT_TYPES[feed_query.fmt])
        if plan.not_array < config.not_array_rate:
            note(200, fault="not_array")
            return web.json_response({"status": "error", "message": "Database busy, try again later"})

        ids, fault = await self._answer_ids(feed_query, plan)
        truncate = plan.truncate < config.truncate_rate
        content_type = f"{CONTENT_TYPES[feed_query.fmt]}; charset=utf-8"
        response = web.StreamResponse(headers={"Content-Type": content_type})
        try:
            await response.prepare(request)
        except ConnectionResetError:
            note(200, fault="client_disconnected")
            return response  # the client is gone before the answer began
        if plan.drip < config.drip_rate:
            note(200, fault="drip")
            await self._drip(response, ids, feed_query.fmt)
            return response
        try:
            rows = await self._write_rows(response, ids, feed_query.fmt, truncate)
        except ConnectionResetError:
            note(200, fault="client_disconnected")
            raise
        note(200, rows, "truncate" if truncate else fault)
        if truncate:
            # Drop the connection mid-row, as a dying PHP worker does.
            if request.transport is not None:
                request.transport.close()
            return response
        with contextlib.suppress(ConnectionResetError):  # the client went away at the very end
            await response.write_eof()
        return response

    def _draw_plan(self) -> _Plan:
        draw = self._fault_rng.random
        plan = _Plan(draw(), draw(), draw(), draw(), draw(), draw(), random.Random(self._fault_rng.getrandbits(64)))
        more = self._more_faults_rng.random
        plan.reset, plan.drip, plan.empty_body, plan.not_array = more(), more(), more(), more()
        return plan

    async def _answer_ids(self, query: FeedQuery, plan: _Plan) -> tuple[Sequence[int], str | None]:
        """The IDs of one answer in order, and which row-level fault shaped them, if any."""
        ids: Sequence[int] = await self._select(query, self.max_id)
        faults: list[str] = []
        if plan.resend < self.config.resend_rate:
            low = max(self.config.first_id, query.fromid - _RESEND_MAX + 1)
            old = [i for i in range(low, min(query.fromid, self.max_id) + 1) if self._matches(i, query)]
            if old:
                ids = [*old, *ids]
                faults.append("resend")
        if ids and plan.duplicate < self.config.duplicate_rate:
            picks = set(plan.rng.sample(range(len(ids)), max(1, len(ids) // 20)))
            # A repeated row follows its first copy, so the order stays ascending.
            ids = [i for n, record_id in enumerate(ids) for i in (record_id,) * (2 if n in picks else 1)]
            faults.append("duplicate")
        if self.config.out_of_order and len(ids) > 1:
            ids = list(ids)
            plan.rng.shuffle(ids)
            faults.append("out_of_order")
        return ids, ",".join(faults) or None

    async def _select(self, query: FeedQuery, last_id: int) -> Sequence[int]:
        first = max(query.fromid + 1, self.config.first_id)
        limit = self.config.page_size or last_id - first + 1
        if not query.filtered:
            return range(first, min(last_id, first + limit - 1) + 1)
        candidates = range(first, last_id + 1)
        if query.date is not None:
            # Timestamps never decrease with ID, so a local day is one contiguous ID range.
            lo, hi = (_local_midnight(day) for day in (query.date, query.date + timedelta(days=1)))
            key = self.generator.timestamp
            candidates = candidates[
                bisect.bisect_left(candidates, lo, key=key) : bisect.bisect_left(candidates, hi, key=key)
            ]
        ids: list[int] = []
        for n, record_id in enumerate(candidates, 1):
            if self._matches(record_id, query):
                ids.append(record_id)
                if len(ids) >= limit:
                    break
            if n % 20_000 == 0:
                await asyncio.sleep(0)  # a long scan must not stall other requests
        return ids

    def _matches(self, record_id: int, query: FeedQuery) -> bool:
        if query.calls_only or query.services_only:
            service = self.generator.is_service(record_id)
            if (query.calls_only and service) or (query.services_only and not service):
                return False
        if query.date is None:
            return True
        local = datetime.fromtimestamp(self.generator.timestamp(record_id), NZ)
        return local.date() == query.date and (query.hour is None or local.hour == query.hour)

    async def _write_rows(self, response: web.StreamResponse, ids: Sequence[int], fmt: str, cut: bool) -> int:
        """Stream the answer in chunks; with `cut`, stop halfway through the middle row."""
        frame = framing(fmt)
        if not ids:
            await response.write(frame.empty[: len(frame.empty) // 2] if cut else frame.empty)
            return 0
        stop = len(ids) // 2 if cut else len(ids)
        await response.write(frame.opening)
        for start in range(0, stop, CHUNK_ROWS):
            rendered = self._rendered(ids[start : min(start + CHUNK_ROWS, stop)], fmt)
            await response.write((frame.separator if start else b"") + frame.separator.join(rendered))
        if cut:
            partial = self.cache.rows(ids[stop : stop + 1], fmt)[0]
            await response.write((frame.separator if stop else b"") + partial[: len(partial) // 2])
            return stop
        await response.write(frame.closing)
        return len(ids)

    def _rendered(self, ids: Sequence[int], fmt: str) -> list[bytes]:
        rows = self.cache.rows(ids, fmt)
        every = self.config.oversize_every
        if every <= 0 or fmt != "json":
            return rows
        padding = b',"Notes":"' + b"x" * self.config.oversize_bytes + b'"}'
        # Built per answer, never cached: the simulator itself should not hold the huge rows.
        return [row[:-1] + padding if record_id % every == 0 else row for record_id, row in zip(ids, rows, strict=True)]

    async def _drip(self, response: web.StreamResponse, ids: Sequence[int], fmt: str) -> None:
        """The answer one byte at a time, as a stuck server does; it ends when the client gives up."""
        frame = framing(fmt)
        body = frame.opening + frame.separator.join(self._rendered(ids[:CHUNK_ROWS], fmt)) + frame.closing
        interval = self.config.drip_interval_ms / 1000
        with contextlib.suppress(ConnectionResetError):
            for position in range(len(body)):
                await response.write(body[position : position + 1])
                await asyncio.sleep(interval)
            await response.write_eof()


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashing server or a middlebox does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _local_midnight(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), NZ).timestamp())


def _same(given: str | None, expected: str) -> bool:
    # Constant-time, so the simulator does not teach clients to rely on timing.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
