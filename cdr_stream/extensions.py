"""The package's C extensions and the switch that turns them off.

`hatch_build.py` builds them with the package: `records/_native` (reading and normalizing rows) and
`kafka/_batches` (record batches of events). CDR_STREAM_PURE_PYTHON=1 builds the package without them,
and makes a process run without them where they are built: the same events and batches, at a higher CPU
cost a record.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final

#: Set to 1 (or true, yes) to run without the C extensions, as a build without a compiler does.
PURE_PYTHON_ENV: Final = "CDR_STREAM_PURE_PYTHON"


def pure_python_requested() -> bool:
    """Whether CDR_STREAM_PURE_PYTHON turns the C extensions off."""
    return os.environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "yes")


def load(module: str) -> Any:
    """The extension `module`, or None where it is not built or turned off."""
    if pure_python_requested():
        return None
    try:
        return importlib.import_module(module)
    except ImportError:  # built with CDR_STREAM_PURE_PYTHON=1, or by hand without the extensions
        return None
