from __future__ import annotations

import random

from cdr_stream.pipeline.backoff import backoff_delay


def test_full_jitter_stays_under_a_growing_capped_ceiling() -> None:
    rng = random.Random(1)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0), (100, 60.0)]:
        delays = [backoff_delay(failures, initial=1.0, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # jitter covers the range, not one point


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(2)
    assert all(backoff_delay(1, initial=1.0, cap=60.0, retry_after=30.0, rng=rng) >= 30.0 for _ in range(50))
    assert backoff_delay(1, initial=1.0, cap=60.0, retry_after=10**9, rng=rng) == 3600.0


def test_a_floor_share_keeps_every_delay_in_the_upper_part_of_its_ceiling() -> None:
    rng = random.Random(3)
    for failures, ceiling in [(1, 60.0), (2, 120.0), (5, 900.0), (50, 900.0)]:
        delays = [backoff_delay(failures, initial=60.0, cap=900.0, rng=rng, floor_share=0.5) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert min(delays) < ceiling * 0.6 and max(delays) > ceiling * 0.9
