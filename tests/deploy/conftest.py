"""The chart tests need the helm that `make ops-check` builds: `-m "not tools"` leaves them out."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent / "test_chart_config.py"
    for item in items:
        if item.path == here:
            item.add_marker(pytest.mark.tools)
