"""Resident memory of a process, for tests that guard against per-record memory blow-ups (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def _status_kib(field: str, pid: int | str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1])


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory now."""
    return _status_kib("VmRSS", pid)


def peak_rss_kib(pid: int | str = "self") -> int:
    """The most resident memory the process has had (VmHWM): read it before the process exits."""
    return _status_kib("VmHWM", pid)
