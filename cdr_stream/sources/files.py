"""Which of the provider's CDR files to read next, in which order, and what to report about the others.

Pure (no I/O): a directory listing and the committed `FilesPosition` go in, a `Plan` comes out. Files are
read in the order of the period their name carries (a day, an hour or a 20-minute slot), never skipping
ahead of a file that is still being written. A file committed earlier is never read again: if it
changed, or reappears under another name, that is reported instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cdr_stream.errors import FileAnomaly
from cdr_stream.kafka.state import FileInFlight, FileMark, FilesPosition


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str
    mark: FileMark
    period: datetime


def period_of(name: str, pattern: re.Pattern[str]) -> datetime | None:
    """The start of the period a CDR file's name carries; None when the name is not a CDR file's."""
    match = pattern.fullmatch(name)
    if match is None or match.group("stamp") is None:
        return None
    digits = re.sub(r"\D", "", match.group("stamp"))
    if len(digits) not in (8, 10, 12):
        return None
    try:
        return datetime.strptime(digits.ljust(12, "0"), "%Y%m%d%H%M")
    except ValueError:
        return None


def cdr_files(listing: Iterable[tuple[str, FileMark]], pattern: re.Pattern[str]) -> list[RemoteFile]:
    """The CDR files of a directory listing, in file order: by period, then by name."""
    files = [
        RemoteFile(name, mark, period) for name, mark in listing if (period := period_of(name, pattern)) is not None
    ]
    return sorted(files, key=lambda remote: (remote.period, remote.name))


def not_cdr_files(listing: Iterable[tuple[str, FileMark]], pattern: re.Pattern[str]) -> list[str]:
    """The names in a directory listing that are not CDR files' (the files `cdr_files` leaves out)."""
    return sorted(name for name, _ in listing if period_of(name, pattern) is None)


@dataclass(frozen=True, slots=True)
class Anomaly:
    name: str
    reason: FileAnomaly
    message: str


@dataclass(frozen=True, slots=True)
class ToRead:
    file: RemoteFile
    #: Rows at its start already committed (the file in flight when the last run stopped).
    skip_rows: int

    @property
    def resumed(self) -> bool:
        """A file partly committed and unchanged since: it was settled when its reading began."""
        return self.skip_rows > 0


@dataclass(slots=True)
class Plan:
    #: Files to read, in order, each from its first uncommitted row.
    to_read: list[ToRead] = field(default_factory=list)
    #: The committed files still listed, plus renamed copies of them (never read).
    done: dict[str, FileMark] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)

    def position(self) -> FilesPosition:
        """The position before reading anything of this plan."""
        return FilesPosition(dict(self.done))


def _describe(mark: FileMark) -> str:
    return f"{mark.size} bytes, mtime {mark.mtime}"


def plan(files: list[RemoteFile], position: FilesPosition) -> Plan:
    """What to do with the listed `files` (in file order) given the committed `position`."""
    out = Plan()
    listed = {remote.name for remote in files}
    out.done = {name: mark for name, mark in position.done.items() if name in listed}
    # A committed file that left the listing may be back under another name: same size, same mtime.
    gone: dict[FileMark, str] = {mark: name for name, mark in position.done.items() if name not in listed}
    current = position.current
    if current is not None and current.name not in listed:
        out.anomalies.append(
            Anomaly(
                current.name,
                FileAnomaly.VANISHED_IN_FLIGHT,
                f"file {current.name} vanished after {current.rows} of its rows were committed; "
                "the rest of it cannot be collected",
            )
        )
    for remote in files:
        committed = position.done.get(remote.name)
        if committed is not None:
            if committed != remote.mark:
                reason = FileAnomaly.SHRUNK if remote.mark.size < committed.size else FileAnomaly.CHANGED
                out.anomalies.append(
                    Anomaly(
                        remote.name,
                        reason,
                        f"file {remote.name} was collected ({_describe(committed)}) and has {reason} since "
                        f"({_describe(remote.mark)}); it is not collected again",
                    )
                )
        elif current is not None and remote.name == current.name:
            # What was started is finished first: reading another file would overwrite its position.
            out.to_read.insert(0, _resume(remote, current, out.anomalies))
        elif remote.mark in gone:
            old = gone.pop(remote.mark)
            out.done[remote.name] = remote.mark
            out.anomalies.append(
                Anomaly(
                    remote.name,
                    FileAnomaly.RENAMED,
                    f"file {remote.name} has the size and mtime of {old}, which was collected and is no longer "
                    f"listed ({_describe(remote.mark)}): taken as {old} renamed, it is not collected again",
                )
            )
        else:
            out.to_read.append(ToRead(remote, 0))
    return out


def _resume(remote: RemoteFile, current: FileInFlight, anomalies: list[Anomaly]) -> ToRead:
    if remote.mark == current.mark:
        return ToRead(remote, current.rows)
    anomalies.append(
        Anomaly(
            remote.name,
            FileAnomaly.CHANGED_IN_FLIGHT,
            f"file {remote.name} changed ({_describe(current.mark)} -> {_describe(remote.mark)}) after "
            f"{current.rows} of its rows were committed; it is read again from its start, and rows at or "
            "below the feed's highest committed ID are dropped",
        )
    )
    return ToRead(remote, 0)


@dataclass(slots=True)
class _Seen:
    mark: FileMark
    since: float
    listing: int


class SettleTracker:
    """Tells a file still being written from a finished one: a file is settled when two listings, at
    least `settle_seconds` apart, showed it with the same size and mtime."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._seen: dict[str, _Seen] = {}
        self._listings = 0

    def observe(self, files: Iterable[RemoteFile], now: float) -> None:
        self._listings += 1
        seen: dict[str, _Seen] = {}
        for remote in files:
            before = self._seen.get(remote.name)
            unchanged = before is not None and before.mark == remote.mark
            seen[remote.name] = before if unchanged and before else _Seen(remote.mark, now, self._listings)
        self._seen = seen  # a file that left the listing is forgotten

    def wait_needed(self, remote: RemoteFile, now: float) -> float | None:
        """None when `remote` is settled; otherwise the seconds to wait before listing again."""
        seen = self._seen.get(remote.name)
        if seen is None or seen.mark != remote.mark:
            return self.settle_seconds
        age = now - seen.since
        if seen.listing < self._listings and age >= self.settle_seconds:
            return None
        return max(0.0, self.settle_seconds - age)
