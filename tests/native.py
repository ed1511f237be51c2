"""The C extensions' switch for the tests that need them: they run unless CDR_STREAM_PURE_PYTHON turns
the extensions off, and fail (never skip) where one is merely missing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from cdr_stream.extensions import PURE_PYTHON_ENV, pure_python_requested

TURNED_OFF = pure_python_requested()
needs_native = pytest.mark.skipif(TURNED_OFF, reason=f"{PURE_PYTHON_ENV} turns the C extensions off")


def assert_built_from_sources(module: Any, sources: Path, name: str) -> None:
    """`module` (an extension, or None) is built from the `name*.[ch]` files in `sources` as they are now,
    or the extensions are turned off and it is None."""
    if TURNED_OFF:
        assert module is None
        return
    assert module is not None, f"the C extension {name} is not built: run `python hatch_build.py` (or make venv)"
    files = sorted(sources.glob(f"{name}*.[ch]"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()
    assert digest == module.SOURCE_SHA256, f"{name}*.[ch] changed since it was built: run `python hatch_build.py`"
