from __future__ import annotations

import asyncio
import logging

import pytest

from cdr_stream.config import KafkaSettings
from cdr_stream.kafka.presence import FeedPresence


async def test_a_presence_member_that_crashes_is_reported(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    presence = FeedPresence(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "state", "east")

    def broken() -> None:
        raise TypeError("a consumer option this aiokafka does not know")

    monkeypatch.setattr(presence, "_new_consumer", broken)
    with caplog.at_level(logging.ERROR, logger="cdr_stream.kafka.presence"):
        await presence.start()
        assert presence._task is not None
        await asyncio.wait([presence._task])
        await asyncio.sleep(0)  # the done callback runs on the next turn of the loop
    assert "feed east: its presence member crashed" in caplog.text
    assert "a consumer option this aiokafka does not know" in caplog.text
    await presence.stop()
