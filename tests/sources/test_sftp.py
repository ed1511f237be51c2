"""The SFTP source against asyncssh's SFTP server in this process; tests/integration/test_sftp.py runs it
against a real OpenSSH server and the broker."""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote_plus

import asyncssh
import pytest

from cdr_stream.config import parse_settings
from cdr_stream.kafka.state import StoredOffset
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.records.processor import usable_id
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import write_cdr_files
from cdr_stream.sources.http import FeedError
from cdr_stream.sources.sftp import SftpSource
from tests.rows import FILE_FORMATS

SECRET = 'Sw0rd fish"<&>'
ESCAPED_FORMS = {
    "plain": SECRET,
    "url": quote_plus(SECRET),
    "json": json.dumps(SECRET)[1:-1],
    "html": html.escape(SECRET),
}


class _PasswordServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return (username, password) == ("812", SECRET)


@asynccontextmanager
async def sftp_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """asyncssh's own SFTP server in this process (the integration tests use OpenSSH): its port and a
    known_hosts file that holds its key."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _PasswordServer, "127.0.0.1", 0, server_host_keys=[host_key], sftp_factory=True
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    try:
        yield port, known_hosts
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_a_file_is_collected_in_its_format_in_transactions_of_the_configured_size(
    tmp_path: Path, fmt: str
) -> None:
    directory = tmp_path / "cdr"
    directory.mkdir()
    generator = FeedGenerator(GeneratorConfig(seed=2, window_days=1.0, span_records=250))
    (file,) = write_cdr_files(directory, generator, range(1, 251), fmt=fmt, period="daily")
    async with sftp_server(tmp_path) as (port, known_hosts):
        sftp = {
            "host": "127.0.0.1",
            "port": port,
            "username": "812",
            "password": SECRET,
            "known_hosts_file": str(known_hosts),
            "directory": str(directory),
            "settle_seconds": 0,
        }
        feed = {"name": "f", "source": "sftp", "format": fmt, "max_rows_per_transaction": 100, "sftp": sftp}
        source = SftpSource(parse_settings({"feeds": [feed]}, {}).feeds[0], ProgressLog())
        batches = [batch async for batch in source.batches(StoredOffset("f", 0))]
    assert [len(batch.rows) for batch in batches] == [100, 100, 50]
    # A JSON file's rows come prepared (cdr_stream.records.page), a text file's as dicts.
    assert [usable_id(row) for batch in batches for row in batch.rows] == list(range(1, 251))
    positions = [batch.files for batch in batches]
    assert [position.current.rows if position and position.current else None for position in positions] == [
        100,
        200,
        None,
    ]
    assert positions[-1] is not None and list(positions[-1].done) == [file.path.name]


def test_a_web_service_feed_is_no_sftp_source() -> None:
    settings = parse_settings({"feeds": [{"name": "f", "url": "http://h/f.php", "login": "l", "password": "p"}]}, {})
    with pytest.raises(ValueError, match="no sftp settings"):
        SftpSource(settings.feeds[0], ProgressLog())


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
