from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from cdr_stream.simulator import FeedSimulator, SimulatorConfig

from .feed_client import PASSWORD, FeedClient

StartFeed = Callable[..., Awaitable[FeedClient]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def start_feed(session: aiohttp.ClientSession) -> AsyncIterator[StartFeed]:
    """Start a simulator with config overrides; every one is stopped after the test."""
    started: list[FeedSimulator] = []

    async def start(**overrides: Any) -> FeedClient:
        sim = FeedSimulator(SimulatorConfig(password=PASSWORD, **overrides))
        await sim.start()
        started.append(sim)
        return FeedClient(session, sim)

    yield start
    for sim in started:
        await sim.stop()
