"""The suite's own markers: `-m "not tools"` (and so `make test-unit`) leaves out every test that runs the helm
`make ops-check` builds, whether directly or through dev/ops/alert-rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
RUNS_HELM = re.compile(r'"alert-rules"|"bin" / "helm"|run\("helm"')


def test_every_test_that_runs_helm_is_left_out_by_not_tools() -> None:
    files = sorted(
        path for path in TESTS.rglob("test_*.py") if path.name != "test_suite.py" and RUNS_HELM.search(path.read_text())
    )
    assert {TESTS / "integration" / "test_prometheus.py", TESTS / "deploy" / "test_chart_install.py"} <= set(files)
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not tools",
            *map(str, files),
        ],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "error" not in collected.stdout.lower(), collected.stdout
    assert [line for line in collected.stdout.splitlines() if "::" in line] == []
