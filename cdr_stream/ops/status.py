"""`cdr-stream status`: a running connector's /status (each feed's state), as a table for people."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from cdr_stream.errors import StatusError

_COLUMNS = ("feed", "state", "last_id", "last commit", "failures", "next attempt", "last failure")
_REQUEST_TIMEOUT_SECONDS = 10.0


def status_url(base: str) -> str:
    """The /status address of a connector given as http://host:port (a full /status address is kept)."""
    base = base.rstrip("/")
    return base if base.endswith("/status") else f"{base}/status"


async def fetch_status(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise StatusError(f"{url} answered HTTP {response.status}")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise StatusError(f"cannot read {url}: {str(exc) or type(exc).__name__}") from None
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StatusError(f"{url} did not answer JSON; is it a cdr-stream connector's http_port?") from None
    if not isinstance(status, dict) or not isinstance(status.get("feeds"), dict):
        raise StatusError(f"{url} did not answer a cdr-stream status")
    return status


def _state(feed: dict[str, Any]) -> str:
    state = str(feed.get("state"))
    if state != "failed":
        return state
    return f"failed ({feed.get('reason')}{', stopped' if feed.get('stopped') else ''})"


def _failure(feed: dict[str, Any]) -> str:
    failure = feed.get("last_failure")
    if not failure:
        return "-"
    return f"{failure['at']} {failure['reason']}: {failure['message']}"


def status_table(status: dict[str, Any]) -> str:
    """One line per feed, the columns aligned; the last failure's message last, in full."""
    rows = [_COLUMNS]
    for name, feed in status["feeds"].items():
        rows.append(
            (
                name,
                _state(feed),
                "-" if feed.get("last_id") is None else str(feed["last_id"]),
                feed.get("last_commit_at") or "-",
                str(feed.get("consecutive_failures", 0)),
                feed.get("next_attempt_at") or ("never (stopped)" if feed.get("stopped") else "-"),
                _failure(feed),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
    lines.append(f"connector: {status.get('status')}")
    return "\n".join(line.rstrip() for line in lines)
