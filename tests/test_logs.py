"""Log lines: JSON for collectors, text for people, secrets redacted whatever logger wrote them."""

from __future__ import annotations

import logging

import orjson
import pytest

from cdr_stream.logs import REDACTED, JsonFormatter, TextFormatter, configure_logging

SECRET = "Sw0rdfish-99"


def _record(message: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("aiokafka.conn", logging.WARNING, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_structured_fields() -> None:
    line = JsonFormatter().format(_record("feed %s committed", "east", feed="east", last_id=42))
    entry = orjson.loads(line)
    assert entry["message"] == "feed east committed"
    assert entry["level"] == "WARNING" and entry["logger"] == "aiokafka.conn"
    assert entry["feed"] == "east" and entry["last_id"] == 42
    assert entry["time"].endswith("+00:00")


def test_text_lines_append_the_fields() -> None:
    line = TextFormatter().format(_record("feed %s committed", "east", feed="east", last_id=42))
    assert "WARNING aiokafka.conn: feed east committed feed=east last_id=42" in line


@pytest.mark.parametrize("formatter", [JsonFormatter([SECRET]), TextFormatter([SECRET])])
def test_every_secret_is_redacted_in_message_fields_and_tracebacks(formatter: logging.Formatter) -> None:
    try:
        raise ValueError(f"login failed with {SECRET}")
    except ValueError as exc:
        error = exc
    line = formatter.format(_record("echo %s", SECRET, exc=error, body=f"password={SECRET}"))
    assert SECRET not in line
    assert line.count(REDACTED) >= 3


def test_configure_logging_auto_is_json_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "auto", [SECRET])
    try:
        logging.getLogger("cdr_stream.test").info("hello %s", SECRET, extra={"feed": "east"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert orjson.loads(err)["message"] == f"hello {REDACTED}"
    finally:
        logging.getLogger().handlers.clear()
