"""The provider's CDR files: the simulator's rows written as daily, hourly or 20-minute files, in any format.

A file holds the records whose NZ local time falls in its period, rendered exactly as the web service
renders an answer in the same format (the repeated hour at the end of daylight saving stays in the file
of the slot before it). Names carry the period's start, as the connector's default
`file_pattern` reads them: `<prefix>YYYYMMDD.<format>` for a day, `<prefix>YYYYMMDD_HHMM.<format>` for an
hour or a 20-minute slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from cdr_stream.simulator.formats import FORMATS, NumbersAs, RowCache, framing
from cdr_stream.simulator.generator import NZ, FeedGenerator

Period = Literal["daily", "hourly", "20min"]
PERIODS: Final[tuple[Period, ...]] = ("daily", "hourly", "20min")
_SLOT_MINUTES: Final = {"hourly": 60, "20min": 20}


@dataclass(frozen=True, slots=True)
class CdrFile:
    """One written file and the records it holds."""

    path: Path
    ids: range

    @property
    def name(self) -> str:
        return self.path.name


def period_start(moment: datetime, period: Period) -> datetime:
    """The start of the period holding `moment` (a local time)."""
    if period == "daily":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    slot = _SLOT_MINUTES[period]
    return moment.replace(minute=moment.minute - moment.minute % slot, second=0, microsecond=0)


def file_name(start: datetime, period: Period, fmt: str, prefix: str = "cdr_") -> str:
    stamp = start.strftime("%Y%m%d") if period == "daily" else start.strftime("%Y%m%d_%H%M")
    return f"{prefix}{stamp}.{fmt}"


def write_cdr_files(
    directory: Path,
    generator: FeedGenerator,
    ids: range,
    *,
    fmt: str,
    period: Period,
    prefix: str = "cdr_",
    numbers_as: NumbersAs = "number",
) -> list[CdrFile]:
    """Write the records `ids` into one file per period (a period without records gets no file).

    Rows are written one by one, so memory stays flat whatever the number of records. Returns the
    files in file order.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    renderer = RowCache(generator, numbers_as)
    frame = framing(fmt)
    files: list[CdrFile] = []
    record_id = ids.start
    while record_id < ids.stop:
        # Timestamps never decrease with the ID: one period is one run of consecutive IDs.
        start = period_start(datetime.fromtimestamp(generator.timestamp(record_id), NZ), period)
        path = directory / file_name(start, period, fmt, prefix)
        first = record_id
        with path.open("wb") as out:
            out.write(frame.opening)
            while record_id < ids.stop:
                moment = datetime.fromtimestamp(generator.timestamp(record_id), NZ)
                # Local time goes back an hour when daylight saving ends: the slots of the repeated hour
                # stay in the file open then, so no name comes twice.
                if period_start(moment, period) > start:
                    break
                if record_id > first:
                    out.write(frame.separator)
                out.write(renderer.render(generator.row(record_id), fmt))
                record_id += 1
            out.write(frame.closing)
        files.append(CdrFile(path, range(first, record_id)))
    return files
