"""Retry delays: capped exponential backoff with jitter, overridden by a server's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

_MAX_RETRY_AFTER: Final = 3600.0


def backoff_delay(
    failures: int,
    *,
    initial: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    floor_share: float = 0.0,
) -> float:
    """Seconds to wait before attempt `failures + 1` (`failures` >= 1).

    Full jitter spreads restarting fleets apart; a Retry-After from the server is a floor (up to an hour).
    `floor_share` keeps the delay above that share of its ceiling, for waits that must never be short.
    """
    ceiling = min(cap, initial * 2 ** min(failures - 1, 62))
    delay = (rng or random).uniform(ceiling * floor_share, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
    return delay


@dataclass(frozen=True, slots=True)
class Backoff:
    """A retry policy: the delay before attempt `failures + 1` grows from `initial` up to `cap`."""

    initial: float
    cap: float
    floor_share: float = 0.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        return backoff_delay(
            failures, initial=self.initial, cap=self.cap, retry_after=retry_after, floor_share=self.floor_share
        )


#: Setting up the Kafka side at start (topics, presence): short waits while the cluster comes up.
STARTUP_BACKOFF: Final = Backoff(initial=1.0, cap=30.0)
