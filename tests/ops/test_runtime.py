"""The garbage collector's settings of a long-running command, checked in a process of their own."""

from __future__ import annotations

import subprocess
import sys

from cdr_stream.ops.runtime import GC_THRESHOLDS

_PROBE = """
import gc
from cdr_stream.ops.runtime import tune_garbage_collector
before = gc.get_freeze_count()
tune_garbage_collector()
cycle = []
cycle.append(cycle)
del cycle
print(gc.get_threshold(), before, gc.get_freeze_count(), gc.collect(), sep="|")
"""


def test_it_raises_the_thresholds_freezes_start_up_and_still_collects_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    thresholds, before, frozen, collected = out.strip().split("|")
    assert thresholds == str(GC_THRESHOLDS) and GC_THRESHOLDS[0] > 700
    assert int(before) == 0 and int(frozen) > 1000, "what start-up made is frozen out of collections"
    assert int(collected) >= 1, "a reference cycle made afterwards is still collected"
