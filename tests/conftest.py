"""Suite-wide reporting: how many generated inputs the property tests tried in this run."""

from __future__ import annotations

import pytest

from tests.properties import SUITE_TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUITE_TALLY.total_inputs():
        inputs = ", ".join(f"{count:,} {kind}" for kind, count in sorted(SUITE_TALLY.inputs.items()))
        terminalreporter.write_line(
            f"property tests: {inputs} generated; {SUITE_TALLY.events:,} events, "
            f"{sum(SUITE_TALLY.dead_letters.values()):,} dead letters, "
            f"{sum(SUITE_TALLY.refused_answers.values()):,} answers refused"
        )
