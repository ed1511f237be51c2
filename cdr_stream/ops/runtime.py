"""Process-wide settings of the commands that run for long: the garbage collector's."""

from __future__ import annotations

import gc
from typing import Final

#: Allocations between two collections of the youngest generation (Python's default: 700), then how many
#: collections of each generation before one of the next.
GC_THRESHOLDS: Final = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Collect less often, and never walk what start-up made.

    A catch-up holds a page of rows, tens of thousands of dicts, that reference counting frees as soon as
    the page is committed. With Python's defaults a collection runs every 700 allocations, and the older
    generations' collections walk every page held at that moment: several percent of the CPU spent on a
    record. Reference cycles are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
