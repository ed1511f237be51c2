"""The SFTP source's parts that need no server; tests/integration/test_sftp.py runs it against a real sshd."""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote_plus

import asyncssh
import orjson
import pytest

from cdr_stream.answers.parse import answer_row_chunks
from cdr_stream.config import parse_settings
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import write_cdr_files
from cdr_stream.sources.http import FeedError
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


SECRET = 'Sw0rd fish"<&>'
ESCAPED_FORMS = {
    "plain": SECRET,
    "url": quote_plus(SECRET),
    "json": json.dumps(SECRET)[1:-1],
    "html": html.escape(SECRET),
}


@pytest.mark.parametrize("escaped", ESCAPED_FORMS.values(), ids=ESCAPED_FORMS.keys())
@pytest.mark.parametrize("secret", ["password", "passphrase"])
async def test_an_sftp_error_never_shows_a_secret_in_any_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str, escaped: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[sftp.example]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n")
    key = tmp_path / "id_ed25519"
    key.write_text("not a key")
    credentials = {"password": SECRET} if secret == "password" else {"private_key_file": str(key), "passphrase": SECRET}
    table = {"host": "sftp.example", "port": 2222, "username": "812", "known_hosts_file": str(known_hosts)}
    settings = parse_settings({"feeds": [{"name": "f", "source": "sftp", "sftp": table | credentials}]}, {})

    def connect(*args: object, **kwargs: object) -> None:
        raise OSError(f"the server said: bad login {escaped}")

    monkeypatch.setattr(asyncssh, "connect", connect)
    source = SftpSource(settings.feeds[0], ProgressLog())
    with pytest.raises(FeedError) as raised:
        async for _ in source.batches(StoredOffset("f", 0)):
            pass
    assert escaped not in str(raised.value) and "***" in str(raised.value)
