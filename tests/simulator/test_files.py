from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from cdr_stream.config import DEFAULT_FILE_PATTERN
from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import PERIODS, Period, file_name, period_start, write_cdr_files
from cdr_stream.simulator.formats import FORMATS
from cdr_stream.simulator.generator import NZ
from cdr_stream.sources.files import period_of

_DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}


def read_ids(path: Path, fmt: str) -> list[int]:
    if fmt == "json":
        return [row["ID"] for row in orjson.loads(path.read_bytes())]
    reader = csv.DictReader(io.StringIO(path.read_text()), delimiter=_DELIMITERS[fmt])
    assert reader.fieldnames == list(FEED_FIELDS)
    return [int(row["ID"]) for row in reader]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("period", PERIODS)
def test_each_record_lands_once_in_the_file_of_its_period(tmp_path: Path, fmt: str, period: Period) -> None:
    # 1 and 2 April 2023 NZ time: daylight saving ends on the 2nd, and the hour from 2 to 3 am comes twice.
    config = GeneratorConfig(seed=4, base_date=date(2023, 4, 3), window_days=2.0, span_records=400, invalid_rate=0.05)
    generator = FeedGenerator(config)
    ids = range(1, 401)
    files = write_cdr_files(tmp_path, generator, ids, fmt=fmt, period=period)
    assert [f.name for f in files] == sorted(f.name for f in files), "names sort in file order"
    assert len({f.name for f in files}) == len(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.name for f in files]
    pattern = re.compile(DEFAULT_FILE_PATTERN)
    starts = []
    for file in files:
        assert read_ids(file.path, fmt) == list(file.ids)
        start = period_of(file.name, pattern)
        assert start is not None, f"{file.name} does not match the connector's default file_pattern"
        starts.append(start.replace(tzinfo=NZ).timestamp())
    # Each record lies between the start of its file's period and the start of the next file's.
    for file, start, end in zip(files, starts, [*starts[1:], float("inf")], strict=True):
        assert all(start <= generator.timestamp(record_id) < end for record_id in file.ids), file.name
    assert [i for f in files for i in f.ids] == list(ids)


def test_names_carry_the_start_of_the_period() -> None:
    moment = datetime(2024, 4, 5, 10, 47, 12, tzinfo=NZ)
    assert file_name(period_start(moment, "daily"), "daily", "csv") == "cdr_20240405.csv"
    assert file_name(period_start(moment, "hourly"), "hourly", "json") == "cdr_20240405_1000.json"
    assert file_name(period_start(moment, "20min"), "20min", "pipe", "812_") == "812_20240405_1040.pipe"


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        write_cdr_files(tmp_path, FeedGenerator(GeneratorConfig()), range(1, 3), fmt="xml", period="daily")
