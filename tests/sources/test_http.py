"""The feed client, driven through its transport seam (no network, no monkeypatching)."""

from __future__ import annotations

import asyncio
import html
import json
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from cdr_stream.answers.order import TempSpace
from cdr_stream.config import FeedSettings
from cdr_stream.errors import FeedAuthError, FeedError
from cdr_stream.sources.http import MIN_PROGRESS_BYTES, FeedClient, FeedResponse, FeedWindow, retry_after_seconds
from tests.leaks import assert_no_secrets, exception_text

SECRET = "pa55-w0rd!"


@dataclass
class CannedResponse:
    status: int = 200
    body: bytes = b"[]"
    headers: Mapping[str, str] = field(default_factory=dict)
    _position: int = 0

    async def read(self, size: int) -> bytes:
        data = self.body[self._position : self._position + size]
        self._position += len(data)
        return data


class CannedTransport:
    def __init__(self, *responses: CannedResponse) -> None:
        self.responses = list(responses)
        self.sent: list[tuple[str, dict[str, str]]] = []

    @asynccontextmanager
    async def post(self, url: str, form: Mapping[str, str]) -> AsyncIterator[FeedResponse]:
        self.sent.append((url, dict(form)))
        yield self.responses.pop(0)

    async def close(self) -> None:
        pass


def feed(**changes: object) -> FeedSettings:
    values: dict[str, object] = {
        "name": "f",
        "url": "http://feed.test/billingfeed.php",
        "login": "812",
        "password": SECRET,
    }
    values.update(changes)
    return FeedSettings.model_validate(values)


async def rows_from(client: FeedClient, from_id: int = 0) -> list[dict[str, object]]:
    return [row async for chunk in client.row_chunks(from_id, chunk_rows=100) for row in chunk]


async def test_the_query_is_a_post_form_with_credentials_and_fromid() -> None:
    transport = CannedTransport(CannedResponse(body=b'[{"ID": 5}]'))
    client = FeedClient(feed(), transport)
    assert await rows_from(client, 4) == [{"ID": 5}]
    ((url, form),) = transport.sent
    assert url == "http://feed.test/billingfeed.php"
    assert SECRET not in url
    assert form == {"login": "812", "password": SECRET, "fromid": "4", "format": "json"}


@pytest.mark.parametrize(("setting", "parameter"), [("callsonly", "callsonly"), ("servicesonly", "servicesonly")])
async def test_optional_parameters_are_sent_only_when_configured(setting: str, parameter: str) -> None:
    transport = CannedTransport(CannedResponse(), CannedResponse())
    await rows_from(FeedClient(feed(), transport))
    await rows_from(FeedClient(feed(**{setting: True}), transport))
    assert parameter not in transport.sent[0][1]
    assert transport.sent[1][1][parameter] == "1"


async def test_the_configured_format_is_asked_for_and_parsed() -> None:
    body = b"ID|AccountCode|UTCDateTime|Charge|ChargeExcl\n5|812|2024-04-05 22:11:12|1|1\n"
    transport = CannedTransport(CannedResponse(body=body))
    rows = await rows_from(FeedClient(feed(format="pipe"), transport), 4)
    assert rows == [
        {"ID": "5", "AccountCode": "812", "UTCDateTime": "2024-04-05 22:11:12", "Charge": "1", "ChargeExcl": "1"}
    ]
    assert transport.sent[0][1]["format"] == "pipe"


async def test_a_window_sends_date_and_hour_only_when_given() -> None:
    transport = CannedTransport(CannedResponse(), CannedResponse())
    client = FeedClient(feed(), transport)
    for window in (FeedWindow(date(2023, 4, 2)), FeedWindow(date(2023, 4, 2), 0)):
        async for _ in client.row_chunks(0, chunk_rows=10, window=window):
            pass
    assert transport.sent[0][1]["date"] == "2023-04-02" and "hour" not in transport.sent[0][1]
    assert (transport.sent[1][1]["date"], transport.sent[1][1]["hour"]) == ("2023-04-02", "0")
    assert "date" not in client.form(1)
    with pytest.raises(ValueError, match="hour"):
        FeedWindow(date(2023, 4, 2), 24)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_login_is_not_retryable_and_hides_the_password(status: int) -> None:
    page = f"<html>bad password {SECRET}</html>".encode()
    client = FeedClient(feed(), CannedTransport(CannedResponse(status=status, body=page)))
    with pytest.raises(FeedAuthError) as caught:
        await rows_from(client)
    assert not caught.value.retriable
    assert caught.value.reason == "auth"
    assert SECRET not in str(caught.value)
    assert "812" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "reason", "retry_after"),
    [
        (CannedResponse(status=503, body=b"<html>down</html>"), "http_5xx", None),
        (CannedResponse(status=429, headers={"Retry-After": "7"}), "rate_limited", 7.0),
        (CannedResponse(status=400, body=b"Error: fromid is required"), "http_4xx", None),
        (CannedResponse(body=b"<html><body>Fatal error</body></html>"), "not_json_array", None),
        (CannedResponse(body=b'[{"ID": 1}, {"ID"'), "invalid_json", None),
        (CannedResponse(body=b'{"rows": []}'), "not_json_array", None),
    ],
)
async def test_failures_are_retryable_feed_errors_with_a_reason(
    response: CannedResponse, reason: str, retry_after: float | None
) -> None:
    with pytest.raises(FeedError) as caught:
        await rows_from(FeedClient(feed(), CannedTransport(response)))
    assert caught.value.retriable
    assert caught.value.reason == reason
    assert caught.value.retry_after == retry_after


async def test_an_error_page_that_echoes_the_password_is_scrubbed() -> None:
    body = f"<html>login=812&password={SECRET}</html>".encode()
    with pytest.raises(FeedError) as caught:
        await rows_from(FeedClient(feed(), CannedTransport(CannedResponse(body=body))))
    assert SECRET not in str(caught.value)
    assert "***" in str(caught.value)


def test_retry_after_as_seconds_or_http_date() -> None:
    from datetime import UTC, datetime

    assert retry_after_seconds("120") == 120.0
    now = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Mon, 01 Jan 2024 00:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


AWKWARD_SECRET = "p@ss w0rd&=%/\u00e9'\"x"


@pytest.mark.parametrize(
    ("status", "page"),
    [
        (500, "<html>you sent login=812&password={encoded}&fromid=0</html>"),  # the form body, URL-encoded
        (200, "<html>Error. You sent: login=812&password={encoded}</html>"),  # cut off mid-secret at 80 chars
        (401, "<p>{plain}</p>"),  # quotes that describe_body's repr() escapes
        (403, '{{"error": "bad password", "password": {json}}}'),
        (502, "<p>Bad password: {html}</p>"),  # PHP's htmlspecialchars()
    ],
)
async def test_an_error_page_that_echoes_the_password_in_any_form_does_not_leak_it(status: int, page: str) -> None:
    # Only the plain password was masked, and after the snippet was cut short: a part could remain.
    body = page.format(
        encoded=quote_plus(AWKWARD_SECRET),
        plain=AWKWARD_SECRET,
        json=json.dumps(AWKWARD_SECRET),
        html=html.escape(AWKWARD_SECRET),
    ).encode()
    client = FeedClient(feed(password=AWKWARD_SECRET), CannedTransport(CannedResponse(status=status, body=body)))
    with pytest.raises(FeedError) as caught:
        await rows_from(client)
    assert_no_secrets(exception_text(caught.value), [AWKWARD_SECRET], "the error")
    assert "***" in str(caught.value)


async def test_a_shuffled_answer_larger_than_a_chunk_comes_in_id_order() -> None:
    # Regression: the rows of a shuffled page went into two transactions, and those of the second that
    # were below the first's highest ID were dropped as already delivered.
    body = b'[{"ID": "7"}, {"ID": 2}, {"nothing": 1}, {"ID": 9}, {"ID": 1}, {"ID": 2}, {"ID": 3}]'
    client = FeedClient(feed(), CannedTransport(CannedResponse(body=body)))
    chunks = [chunk async for chunk in client.ordered_chunks(1, chunk_rows=2)]
    assert [chunk.rows for chunk in chunks] == [[{"nothing": 1}, {"ID": 2}], [{"ID": 3}, {"ID": "7"}], [{"ID": 9}]]
    assert sum(c.dropped_seen for c in chunks) == 1 and sum(c.dropped_duplicate for c in chunks) == 1


async def test_a_streamed_answer_in_any_order_is_sorted_on_disk(tmp_path: Path) -> None:
    ids = list(range(1, 30_001))
    random.Random(3).shuffle(ids)
    body = json.dumps([{"ID": n, "AccountCode": "a"} for n in ids]).encode()
    space = TempSpace(tmp_path)
    client = FeedClient(feed(), CannedTransport(CannedResponse(body=body)), space)
    got = [row["ID"] async for chunk in client.ordered_chunks(0, chunk_rows=1_000) for row in chunk.rows]
    assert got == list(range(1, 30_001))
    assert list(tmp_path.iterdir()) == [] and space.used() == 0


async def test_no_room_to_sort_is_a_spill_failure_of_the_feed(tmp_path: Path) -> None:
    body = json.dumps([{"ID": n} for n in range(30_000, 0, -1)]).encode()
    client = FeedClient(feed(), CannedTransport(CannedResponse(body=body)), TempSpace(tmp_path, max_bytes=100_000))
    with pytest.raises(FeedError) as caught:
        [chunk async for chunk in client.ordered_chunks(0, chunk_rows=1_000)]
    assert caught.value.reason == "spill" and caught.value.retriable
    assert "tmp_max_bytes" in str(caught.value)


@dataclass
class TimedResponse:
    """`[`, then `count` pieces each after `delay` seconds (endless if `forever`), then `{"ID": 1}]`."""

    piece: bytes
    count: int
    delay: float
    forever: bool = False
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    _sent: int = -1

    async def read(self, size: int) -> bytes:
        self._sent += 1
        if self._sent == 0:
            return b"["
        if self._sent <= self.count or self.forever:
            await asyncio.sleep(self.delay)
            return self.piece
        return b'{"ID": 1}]' if self._sent == self.count + 1 else b""


async def test_a_dripping_answer_fails_with_a_timeout_though_bytes_keep_coming() -> None:
    # Regression: aiohttp's read timeout restarts with every byte, so a byte every now and then kept a
    # never-ending answer alive for ever.
    drip = TimedResponse(piece=b" ", count=0, delay=0.01, forever=True)
    client = FeedClient(feed(read_timeout_seconds=0.3), CannedTransport(drip))  # type: ignore[arg-type]
    with pytest.raises(FeedError) as caught:
        await asyncio.wait_for(rows_from(client), 5)  # without the bound, it never ends
    assert caught.value.reason == "timeout"
    assert "stuck" in str(caught.value)


async def test_a_slow_but_steady_huge_answer_is_not_a_timeout() -> None:
    steady = TimedResponse(piece=b" " * MIN_PROGRESS_BYTES, count=12, delay=0.05)
    client = FeedClient(feed(read_timeout_seconds=0.2), CannedTransport(steady))  # type: ignore[arg-type]
    assert await rows_from(client) == [{"ID": 1}]


async def test_time_spent_between_reads_does_not_count_against_the_feed() -> None:
    # The caller commits between chunks; a feed that answers at once is not slow however long that takes.
    from cdr_stream.sources.http import _ProgressGuard

    instant = TimedResponse(piece=b" ", count=10, delay=0.0)
    guard = _ProgressGuard(instant.read, 0.1)
    for _ in range(6):
        assert await guard.read(10)
        await asyncio.sleep(0.05)


async def test_headers_that_never_come_are_a_timeout() -> None:
    class Silent:
        @asynccontextmanager
        async def post(self, url: str, form: Mapping[str, str]) -> AsyncIterator[FeedResponse]:
            await asyncio.sleep(60)
            yield CannedResponse()

        async def close(self) -> None:
            pass

    client = FeedClient(feed(connect_timeout_seconds=0.1, read_timeout_seconds=0.2), Silent())
    with pytest.raises(FeedError) as caught:
        await asyncio.wait_for(rows_from(client), 5)
    assert caught.value.reason == "timeout"
