"""The SFTP source's parts that need no server; tests/integration/test_sftp.py runs it against a real sshd."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cdr_stream.answers.parse import answer_row_chunks
from cdr_stream.config import parse_settings
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import write_cdr_files
from cdr_stream.sources.sftp import SftpSource
from tests.rows import FILE_FORMATS


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_a_file_is_parsed_in_its_format_in_chunks(tmp_path: Path, fmt: str) -> None:
    generator = FeedGenerator(GeneratorConfig(seed=2, window_days=1.0, span_records=250))
    (file,) = write_cdr_files(tmp_path, generator, range(1, 251), fmt=fmt, period="daily")
    content = file.path.read_bytes()
    position = 0

    async def read(size: int) -> bytes:
        nonlocal position
        piece = content[position : position + min(size, 1000)]  # small reads, as over a slow link
        position += len(piece)
        return piece

    chunks = [chunk async for chunk in answer_row_chunks(read, fmt=fmt, chunk_rows=100)]
    assert [len(chunk) for chunk in chunks] == [100, 100, 50]
    rows = [row for chunk in chunks for row in chunk]
    expected = orjson.loads(orjson.dumps([generator.row(i) for i in range(1, 251)], default=str))
    assert [str(row["ID"]) for row in rows] == [str(row["ID"]) for row in expected]
    assert [str(row["AccountCode"]) for row in rows] == [row["AccountCode"] for row in expected]


def test_a_web_service_feed_is_no_sftp_source() -> None:
    settings = parse_settings({"feeds": [{"name": "f", "url": "http://h/f.php", "login": "l", "password": "p"}]}, {})
    with pytest.raises(ValueError, match="no sftp settings"):
        SftpSource(settings.feeds[0], ProgressLog())
