from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cdr_stream.kafka.state import FileInFlight, FileMark, FilesPosition, StoredOffset, utc_now_stamp


def test_a_commit_is_stamped_in_utc_to_the_millisecond() -> None:
    stamp = StoredOffset.now("hero", 1).committed_at
    assert stamp is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert abs(datetime.fromisoformat(utc_now_stamp()) - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_web_service_feed_stores_exactly_the_value_it_always_did() -> None:
    value = StoredOffset("hero", 42, "2024-04-05T22:11:12.000Z").encode()
    assert orjson.loads(value) == {"feed": "hero", "last_id": 42, "committed_at": "2024-04-05T22:11:12.000Z"}


def test_a_value_written_before_files_existed_reads_without_files() -> None:
    stored = StoredOffset.decode(b'{"feed": "hero", "last_id": 7, "committed_at": null}')
    assert stored == StoredOffset("hero", 7, None, None)


def test_a_files_position_round_trips() -> None:
    files = FilesPosition(
        {"cdr_20240405.csv": FileMark(1200, 1712345678), "cdr_20240406.csv": FileMark(0, 1)},
        FileInFlight("cdr_20240407.csv", FileMark(99, 5), 12),
    )
    stored = StoredOffset.now("files", 300, files)
    decoded = StoredOffset.decode(stored.encode())
    assert decoded == stored
    assert orjson.loads(stored.encode())["last_id"] == 300, "older readers still find the highest ID"


@pytest.mark.parametrize(
    "files",
    [
        {"done": []},
        {"done": {"a.csv": [1]}},
        {"done": {"a.csv": [1, -2]}},
        {"done": {}, "current": {"name": "a.csv", "size": 1, "mtime": 1}},
        {"done": {}, "current": {"name": 3, "size": 1, "mtime": 1, "rows": 1}},
    ],
)
def test_a_malformed_files_position_is_refused(files: object) -> None:
    with pytest.raises(ValueError, match="files"):
        StoredOffset.decode(orjson.dumps({"feed": "x", "last_id": 1, "files": files}))
