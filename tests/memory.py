"""Resident memory of this process, for tests that guard against per-record memory blow-ups (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])
