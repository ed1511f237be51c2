from __future__ import annotations

import re
from datetime import datetime

import pytest

from cdr_stream.answers.formats import ANSWER_FORMATS
from cdr_stream.config import DEFAULT_FILE_PATTERN
from cdr_stream.errors import FileAnomaly
from cdr_stream.kafka.state import FileInFlight, FileMark, FilesPosition
from cdr_stream.sources.files import (
    RemoteFile,
    SettleTracker,
    cdr_files,
    not_cdr_files,
    period_of,
    plan,
)

PATTERN = re.compile(DEFAULT_FILE_PATTERN)


def listed(*names: str, size: int = 100) -> list[RemoteFile]:
    return cdr_files([(name, FileMark(size, 1_700_000_000 + n)) for n, name in enumerate(names)], PATTERN)


@pytest.mark.parametrize(
    ("name", "period"),
    [
        ("cdr_20240405.csv", datetime(2024, 4, 5)),
        ("81234567_20240405.json", datetime(2024, 4, 5)),
        ("cdr_20240405_10.txt", datetime(2024, 4, 5, 10)),
        ("cdr_20240405_1000.pipe", datetime(2024, 4, 5, 10)),
        ("cdr-20240405T1040.csv", datetime(2024, 4, 5, 10, 40)),
        ("CDR_2026-03-01.csv", datetime(2026, 3, 1)),
        ("CDR_2026_03_01.csv", datetime(2026, 3, 1)),
        ("CDR_2026-03-01_10.csv", datetime(2026, 3, 1, 10)),
        ("CDR_2026-03-01T1020.csv", datetime(2026, 3, 1, 10, 20)),
        ("CDR_2026-03-01_10-20.json", datetime(2026, 3, 1, 10, 20)),
        ("cdr_2026_03_01_10_20.pipe", datetime(2026, 3, 1, 10, 20)),
        ("cdr-2026-03-01-1020.txt", datetime(2026, 3, 1, 10, 20)),
        ("CDR_2026-03_01.csv", None),  # two spellings in one date
        ("CDR_2026-0301.csv", None),
        ("CDR-01032026.csv", None),  # day first: no such month
        ("CDR_2026-02-30.csv", None),
        ("CDR_2026-03-01_25.csv", None),  # no such hour
        ("cdr_20240231.csv", None),  # no such day
        ("cdr_20240405.csv.part", None),  # still being uploaded under a temporary name
        ("README.txt", None),
        ("cdr_2024.csv", None),
    ],
)
def test_the_period_comes_from_the_name(name: str, period: datetime | None) -> None:
    assert period_of(name, PATTERN) == period


def test_files_are_in_period_order_then_by_name() -> None:
    files = listed("b_20240406.csv", "cdr_20240405_1020.csv", "a_20240406.csv", "cdr_20240405_0940.csv", "notes.txt")
    assert [f.name for f in files] == [
        "cdr_20240405_0940.csv",
        "cdr_20240405_1020.csv",
        "a_20240406.csv",
        "b_20240406.csv",
    ]


def test_files_dated_in_different_spellings_are_in_time_order() -> None:
    names = [
        "cdr_20260301_1100.csv",
        "CDR_2026-03-01_10.csv",
        "CDR_2026_03_01_1020.csv",
        "CDR-2026-02-28.csv",
        "cdr_2026-03-01.csv",
        "notes_2026.txt",
    ]
    assert [f.name for f in listed(*names)] == [
        "CDR-2026-02-28.csv",
        "cdr_2026-03-01.csv",
        "CDR_2026-03-01_10.csv",
        "CDR_2026_03_01_1020.csv",
        "cdr_20260301_1100.csv",
    ]


def test_the_names_that_are_not_cdr_files_are_listed_apart() -> None:
    marks = [(name, FileMark(1, 1)) for name in ("b.txt", "cdr_20240405.csv", "a.csv.part", "CDR_2026-03-01.csv")]
    assert not_cdr_files(marks, PATTERN) == ["a.csv.part", "b.txt"]


def test_new_files_are_read_in_order_and_committed_ones_are_not() -> None:
    files = listed("cdr_20240405.csv", "cdr_20240406.csv", "cdr_20240407.csv")
    position = FilesPosition({"cdr_20240405.csv": files[0].mark})
    planned = plan(files, position)
    assert [(item.file.name, item.skip_rows) for item in planned.to_read] == [
        ("cdr_20240406.csv", 0),
        ("cdr_20240407.csv", 0),
    ]
    assert planned.anomalies == []
    assert planned.position() == position


def test_the_file_in_flight_resumes_first_after_its_committed_rows() -> None:
    files = listed("cdr_20240404.csv", "cdr_20240405.csv", "cdr_20240406.csv")
    position = FilesPosition({}, FileInFlight("cdr_20240405.csv", files[1].mark, 250))
    planned = plan(files, position)
    assert [(item.file.name, item.skip_rows) for item in planned.to_read] == [
        ("cdr_20240405.csv", 250),
        ("cdr_20240404.csv", 0),
        ("cdr_20240406.csv", 0),
    ]
    assert planned.to_read[0].resumed


def test_a_file_changed_while_in_flight_is_reported_and_read_from_its_start() -> None:
    files = listed("cdr_20240405.csv")
    position = FilesPosition({}, FileInFlight("cdr_20240405.csv", FileMark(50, 1), 20))
    planned = plan(files, position)
    assert [(item.file.name, item.skip_rows) for item in planned.to_read] == [("cdr_20240405.csv", 0)]
    assert [(a.name, a.reason) for a in planned.anomalies] == [("cdr_20240405.csv", FileAnomaly.CHANGED_IN_FLIGHT)]


def test_a_file_vanished_while_in_flight_is_reported() -> None:
    position = FilesPosition({}, FileInFlight("cdr_20240405.csv", FileMark(50, 1), 20))
    planned = plan(listed("cdr_20240406.csv"), position)
    assert [(a.name, a.reason) for a in planned.anomalies] == [("cdr_20240405.csv", FileAnomaly.VANISHED_IN_FLIGHT)]
    assert [item.file.name for item in planned.to_read] == ["cdr_20240406.csv"]


@pytest.mark.parametrize(
    ("size", "reason"), [(40, FileAnomaly.SHRUNK), (100, FileAnomaly.CHANGED), (160, FileAnomaly.CHANGED)]
)
def test_a_committed_file_that_changed_is_reported_and_not_read(size: int, reason: str) -> None:
    (remote,) = listed("cdr_20240405.csv", size=size)
    position = FilesPosition({remote.name: FileMark(100, 5)})
    planned = plan([remote], position)
    assert planned.to_read == []
    ((name, got, message),) = [(a.name, a.reason, a.message) for a in planned.anomalies]
    assert (name, got) == (remote.name, reason)
    assert "not collected again" in message and "100 bytes" in message
    assert planned.position() == position, "the committed mark stays: the change is reported, not adopted"


def test_a_renamed_file_is_reported_and_stored_as_committed_under_its_new_name() -> None:
    (remote,) = listed("again_20240405.csv")
    position = FilesPosition({"cdr_20240405.csv": remote.mark})
    planned = plan([remote], position)
    assert planned.to_read == []
    assert [(a.name, a.reason) for a in planned.anomalies] == [("again_20240405.csv", FileAnomaly.RENAMED)]
    assert "cdr_20240405.csv" in planned.anomalies[0].message
    assert planned.position() == FilesPosition({"again_20240405.csv": remote.mark})


def test_committed_files_that_left_the_server_are_forgotten() -> None:
    files = listed("cdr_20240406.csv")
    position = FilesPosition({"cdr_20240405.csv": FileMark(7, 7), files[0].name: files[0].mark})
    planned = plan(files, position)
    assert planned.position() == FilesPosition({files[0].name: files[0].mark})
    assert planned.to_read == [] and planned.anomalies == []


def test_a_file_settles_after_two_listings_the_settle_time_apart() -> None:
    settle = SettleTracker(5.0)
    (first,) = listed("cdr_20240405.csv", size=100)
    settle.observe([first], now=0.0)
    assert settle.wait_needed(first, now=0.0) == 5.0, "one listing is never enough"
    settle.observe([first], now=2.0)
    assert settle.wait_needed(first, now=2.0) == 3.0
    (grown,) = listed("cdr_20240405.csv", size=180)
    settle.observe([grown], now=6.0)
    assert settle.wait_needed(grown, now=6.0) == 5.0, "a change starts the wait again"
    settle.observe([grown], now=11.0)
    assert settle.wait_needed(grown, now=11.0) is None


def test_with_no_settle_time_a_file_still_needs_a_second_listing() -> None:
    settle = SettleTracker(0.0)
    (remote,) = listed("cdr_20240405.csv")
    settle.observe([remote], now=0.0)
    assert settle.wait_needed(remote, now=0.0) == 0.0
    settle.observe([remote], now=0.0)
    assert settle.wait_needed(remote, now=0.0) is None


@pytest.mark.parametrize("fmt", ANSWER_FORMATS)
def test_a_file_in_every_answer_format_is_a_cdr_file_by_default(fmt: str) -> None:
    assert [file.name for file in listed(f"cdr_20240405.{fmt}", "cdr_20240405.xml")] == [f"cdr_20240405.{fmt}"]
