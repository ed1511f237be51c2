"""A bare client for the simulator tests: posts parameters, parses answers, nothing clever."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from cdr_stream.simulator import FeedSimulator

PASSWORD = "t0p-Secret-Value-9"
DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}


@dataclass
class Answer:
    status: int
    headers: Any
    text: str

    def rows(self, fmt: str = "json") -> list[dict[str, Any]]:
        if fmt == "json":
            parsed: list[dict[str, Any]] = orjson.loads(self.text)
            return parsed
        return list(csv.DictReader(io.StringIO(self.text, newline=""), delimiter=DELIMITERS[fmt]))


class FeedClient:
    def __init__(self, session: aiohttp.ClientSession, sim: FeedSimulator) -> None:
        self.session = session
        self.sim = sim

    async def call(
        self,
        method: str = "POST",
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Answer:
        data = form if method == "POST" else None
        async with self.session.request(method, self.sim.url, params=query, data=data) as response:
            return Answer(response.status, response.headers, await response.text())

    async def post(self, **params: str | int) -> Answer:
        form = {"login": "demo", "password": PASSWORD, **{k: str(v) for k, v in params.items()}}
        return await self.call("POST", form=form)

    async def rows(self, fmt: str = "json", **params: str | int) -> list[dict[str, Any]]:
        answer = await self.post(format=fmt, **params)
        assert answer.status == 200, answer.text
        return answer.rows(fmt)

    async def ids(self, **params: str | int) -> list[int]:
        return [int(row["ID"]) for row in await self.rows("json", **params)]
