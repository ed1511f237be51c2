"""What people see: a log line per committed transaction; for a backfill, one rewritten line on a terminal, log
lines otherwise."""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from datetime import date

import orjson
import pytest

from cdr_stream.ops.logs import JsonFormatter, TextFormatter
from cdr_stream.ops.progress import BackfillReport, ProgressLog
from cdr_stream.pipeline.backfill import BackfillProgress, BackfillWindow, RunIdentity
from cdr_stream.pipeline.observer import PageReport
from cdr_stream.sources.http import FeedWindow

DAY = date(2023, 4, 2)
RUN = RunIdentity("hero", BackfillWindow(DAY, DAY), "cdr.events")


def progress(done: int, events: int, dead_letters: int = 0) -> BackfillProgress:
    return BackfillProgress("hero-x-1", 1, 24, done, 0, events, dead_letters)


def test_a_terminal_gets_one_line_rewritten_with_hours_rows_and_rate() -> None:
    terminal = io.StringIO()
    report = BackfillReport(terminal)
    report.started(RUN, progress(0, 0))
    report.committed(progress(0, 500, 2), FeedWindow(DAY, 0))
    report.hour_done(progress(1, 1200, 3), FeedWindow(DAY, 0))
    report.finished(progress(24, 9000, 10))
    shown = terminal.getvalue()
    assert shown.count("\r\x1b[K") == 2
    assert "hours 0/24, 502 rows (2 dead-lettered)" in shown
    assert "hours 1/24, 1,203 rows (3 dead-lettered)" in shown and "rows/s, at 2023-04-02 00:00" in shown
    assert shown.endswith("\n")


def test_without_a_terminal_each_hour_done_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    report = BackfillReport()
    with caplog.at_level(logging.INFO, logger="cdr_stream.ops.progress"):
        report.started(RUN, progress(3, 700))
        report.committed(progress(3, 800), FeedWindow(DAY, 3))
        report.hour_done(progress(4, 900), FeedWindow(DAY, 3))
        report.finished(progress(24, 5000))
    messages = [record.getMessage() for record in caplog.records]
    assert "resuming with 3 of 24 hours done and 700 rows sent" in messages[0]
    assert len(messages) == 3  # per-commit lines are DEBUG
    assert "hours 4/24, 900 rows" in messages[1] and "2023-04-02 03:00 done" in messages[1]
    assert "finished: 5000 events and 0 dead letters over 24 hour(s), marked cdr-replay: hero-x-1" in messages[2]


def test_a_commit_line_counts_the_unreadable_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdr_stream.ops.progress")
    report = ProgressLog()
    page = PageReport(10, 20, 9, 1, 0, 0, unreadable_fields=Counter({"BillDate": 2, "Seconds": 1}))
    report.page_committed("hero", page)
    report.page_committed("hero", PageReport(20, 21, 1, 0, 0, 0))
    first, second = caplog.records
    assert "IDs 11..20: 9 published (3 unreadable values), 1 dead-lettered" in first.getMessage()
    assert (first.__dict__["unreadable_values"], second.__dict__["unreadable_values"]) == (3, 0)
    assert report.totals["hero"].unreadable == 3


def _lines_of_every_kind(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.DEBUG, logger="cdr_stream.ops.progress")
    report = ProgressLog()
    report.offset_loaded("demo", 0)
    report.page_committed("demo", PageReport(0, 1000, 986, 14, 0, 0, commit_seconds=0.01234))
    report.poll_finished("demo", seconds=0.456789, rows=1000, advanced=True)
    report.poll_failed("demo", reason="timeout", message="no answer in time", retry_in=4.567, consecutive=2)
    report.feed_failed("demo", reason="auth", message="the feed refused the login", retry_in=300.0, consecutive=3)
    report.file_anomaly("demo", name="cdr_20240405.csv", reason="renamed", message="cdr_20240405.csv was renamed")
    return list(caplog.records)


def test_a_text_line_says_each_figure_once(caplog: pytest.LogCaptureFixture) -> None:
    formatter = TextFormatter()
    after_messages = []
    for record in _lines_of_every_kind(caplog):
        line = formatter.format(record)
        message = record.getMessage()
        after = line.split(message, 1)[1]
        for figure in re.findall(r"\d+(?:\.\d+)?", message):
            assert not re.search(rf"=\W*{re.escape(figure)}\b", after), f"{figure} twice in {line!r}"
        after_messages.append(after)
    committed = after_messages[1]
    assert committed == "", "a commit line's message says every field"
    assert after_messages[4] == " consecutive=3", "a field the message does not say still shows"


def test_a_json_line_keeps_every_field(caplog: pytest.LogCaptureFixture) -> None:
    committed = _lines_of_every_kind(caplog)[1]
    entry = orjson.loads(JsonFormatter().format(committed))
    assert {key: entry[key] for key in ("feed", "from_id", "last_id", "published", "dead_lettered")} == {
        "feed": "demo",
        "from_id": 1,
        "last_id": 1000,
        "published": 986,
        "dead_lettered": 14,
    }
    assert entry["unreadable_values"] == 0 and entry["dropped"] == 0 and entry["commit_seconds"] == 0.0123
    assert "feed demo committed IDs 1..1000: 986 published" in entry["message"]
