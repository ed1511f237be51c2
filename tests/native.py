"""The C extension's switch for the tests that need it: they run unless CDR_STREAM_PURE_PYTHON turns the
extension off, and fail (never skip) where it is merely missing."""

from __future__ import annotations

import pytest

from cdr_stream.records.fastpath import PURE_PYTHON_ENV, pure_python_requested

TURNED_OFF = pure_python_requested()
needs_native = pytest.mark.skipif(TURNED_OFF, reason=f"{PURE_PYTHON_ENV} turns the C extension off")
