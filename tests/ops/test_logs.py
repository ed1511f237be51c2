"""Log lines: JSON for collectors, text for people, secrets redacted whatever logger wrote them, and no
flood of repeated client errors while Kafka is away."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from urllib.parse import quote_plus

import orjson
import pytest
from aiokafka.errors import ProducerFenced

from cdr_stream.ops.logs import (
    JsonFormatter,
    RepeatFilter,
    TextFormatter,
    configure_logging,
    describe_error,
    quiet_abandoned_kafka_futures,
    redact_also,
)
from cdr_stream.ops.secrets import REDACTED

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


def test_text_lines_append_only_the_fields_the_message_does_not_show() -> None:
    line = TextFormatter().format(_record("feed %s committed", "east", feed="east", last_id=42))
    assert line.endswith("WARNING aiokafka.conn: feed east committed last_id=42")


@pytest.mark.parametrize(
    ("message", "value", "said"),
    [
        ("IDs 1..1000: done", 1000, True),
        ("IDs 1..1000: done", 1, True),
        ("IDs 1..1000: done", 100, False),
        ("in 0.0123 s", 0.0123, True),
        ("in 0.0123 s", 123, False),
        ("in 0.0123 s", 0, False),
        ("feed east-2 failed", "east", False),
        ("feed east-2 failed", "east-2", True),
    ],
)
def test_a_field_is_said_only_when_the_message_shows_its_value_whole(message: str, value: object, said: bool) -> None:
    line = TextFormatter().format(_record(message, field=value))
    assert line.endswith(message) is said


@pytest.mark.parametrize("formatter", [JsonFormatter([SECRET]), TextFormatter([SECRET])])
def test_every_secret_is_redacted_in_message_fields_and_tracebacks(formatter: logging.Formatter) -> None:
    try:
        raise ValueError(f"login failed with {SECRET}")
    except ValueError as exc:
        error = exc
    line = formatter.format(_record("echo %s", SECRET, exc=error, body=f"password={SECRET}"))
    assert SECRET not in line
    assert line.count(REDACTED) >= 3


ESCAPED_SECRET = 'Sw0rd fish"<&>'
ESCAPED_FORMS = {
    "url": quote_plus(ESCAPED_SECRET),
    "json": json.dumps(ESCAPED_SECRET)[1:-1],
    "html": html.escape(ESCAPED_SECRET),
}


@pytest.mark.parametrize("formatter_type", [JsonFormatter, TextFormatter])
@pytest.mark.parametrize("form", ESCAPED_FORMS.values(), ids=ESCAPED_FORMS.keys())
def test_a_secret_is_redacted_in_its_escaped_forms_too(formatter_type: type[TextFormatter], form: str) -> None:
    line = formatter_type([ESCAPED_SECRET]).format(_record("the feed answered: password=%s", form))
    assert form not in line and REDACTED in line


def test_configure_logging_auto_is_json_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "auto", [SECRET])
    try:
        logging.getLogger("cdr_stream.test").info("hello %s", SECRET, extra={"feed": "east"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert orjson.loads(err)["message"] == f"hello {REDACTED}"
    finally:
        logging.getLogger().handlers.clear()


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_of_a_kafka_client_message_are_held_back_and_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval=60.0, clock=lambda: now[0])
    flood = [record("aiokafka", "Unable connect to node with id %s: %s", 1, f"attempt {n}") for n in range(500)]
    assert [repeats.filter(line) for line in flood].count(True) == 1
    assert repeats.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"))
    assert repeats.filter(record("cdr_stream.pipeline.poller", "Unable connect to node with id %s: %s", 1, "x"))
    now[0] = 61.0
    later = record("aiokafka", "Unable connect to node with id %s: %s", 1, "again")
    assert repeats.filter(later)
    assert later.repeats_not_shown == 499  # type: ignore[attr-defined]


def test_other_loggers_are_never_held_back() -> None:
    repeats = RepeatFilter()
    assert all(repeats.filter(record("cdr_stream.ops.progress", "feed %s: retry", "f")) for _ in range(100))


def test_describe_error_names_the_type_once() -> None:
    assert describe_error(ValueError("bad")) == "ValueError: bad"
    assert describe_error(TimeoutError()) == "TimeoutError"


async def test_a_never_retrieved_kafka_future_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    quiet_abandoned_kafka_futures(loop)
    never = "Future exception was never retrieved"
    try:
        with caplog.at_level(logging.DEBUG):
            loop.call_exception_handler({"message": never, "exception": ProducerFenced()})
            loop.call_exception_handler({"message": never, "exception": KeyError(1)})
    finally:
        loop.set_exception_handler(before)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(level == "DEBUG" and "abandoned Kafka request ended: ProducerFenced" in m for level, m in levels), levels
    assert any(level == "ERROR" and never in message for level, message in levels), levels


def test_a_secret_read_again_after_a_rotation_is_redacted_from_then_on(capsys: pytest.CaptureFixture[str]) -> None:
    rotated = "R0tated-Secret-99"
    configure_logging("INFO", "text", [SECRET])
    try:
        redact_also([rotated, ""])
        logging.getLogger("cdr_stream.test").warning("old %s new %s", SECRET, rotated)
        err = capsys.readouterr().err
        assert SECRET not in err and rotated not in err and err.count(REDACTED) == 2
    finally:
        logging.getLogger().handlers.clear()
