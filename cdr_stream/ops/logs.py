"""Logging setup: one line per event, as JSON (for log collectors) or text (for people at a terminal).

Structured fields a record carries in `extra` (feed, IDs, durations...) become JSON keys; a text line
adds as `key=value` only those its message does not already show. Every configured secret, in every form
it may show in (ops/secrets.py), is replaced by `***` in the final line, whatever logger (ours, aiohttp's,
aiokafka's) produced it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiokafka.errors import KafkaError

from cdr_stream.ops.secrets import SecretMask

LogFormat = Literal["auto", "json", "text"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._mask = SecretMask(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self._mask.add(secrets)

    def redact(self, text: str) -> str:
        return self._mask(text)


def _says(message: str, value: object) -> bool:
    """Whether the message shows this value whole: `1000` is in "IDs 1..1000:", not in "10000" or "0.1000"."""
    text = str(value)
    return bool(text) and re.search(rf"(?<![\w-])(?<!\d\.){re.escape(text)}(?![\w-]|\.\d)", message) is not None


class TextFormatter(_Redacting):
    """A line for a person: the message, then only the fields whose value it does not already show."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        unsaid = {key: value for key, value in _extras(record).items() if not _says(record.message, value)}
        if unsaid:
            line += " " + " ".join(f"{key}={value}" for key, value in unsaid.items())
        return self.redact(line)


class JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Masked before encoding too: JSON would escape an escaped form again, out of the mask's reach.
        entry = {key: self.redact(value) if isinstance(value, str) else value for key, value in entry.items()}
        return self.redact(orjson.dumps(entry, default=str).decode())


class RepeatFilter(logging.Filter):
    """Lets through one record per message template of the noisy loggers (`prefix`) every `interval`
    seconds; the next one that passes says how many it stood for. While Kafka is unreachable, aiokafka
    logs each failed connection attempt at ERROR, about a hundred lines a second."""

    def __init__(self, prefix: str = "aiokafka", interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._prefix = prefix
        self._interval = interval
        self._clock = clock
        self._passed: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        passed = self._passed.get(key)
        if passed is not None and now - passed < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._passed[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.repeats_not_shown = held
        return True


def configure_logging(level: str = "INFO", fmt: LogFormat = "text", secrets: Iterable[str] = ()) -> None:
    """Log to stderr; `auto` means text on a terminal and JSON lines otherwise."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every retry of a lost connection at ERROR; the connector reports those itself.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # One line per request to /metrics and the probes would drown the connector's own lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # asyncssh logs every SFTP request at INFO; the SFTP source reports what matters itself.
    logging.getLogger("asyncssh").setLevel(max(logging.getLevelName(level), logging.WARNING))


def redact_also(secrets: Iterable[str]) -> None:
    """Mask these secrets too in every line from now on (a secret read again after it was rotated)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _Redacting):
            handler.formatter.add_secrets(secrets)


def describe_error(exc: BaseException) -> str:
    """`Type: message`, once: Kafka's errors already start their message with their type."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def quiet_abandoned_kafka_futures(loop: asyncio.AbstractEventLoop) -> None:
    """Log a Kafka client's never-retrieved future at DEBUG instead of as an ERROR with a traceback.

    A producer given up after a failed or timed-out commit is stopped without waiting for it; when the
    broker answers later (often "fenced": the transaction timed out meanwhile), asyncio reports its
    internal futures as "never retrieved". That reads like a real fencing, and it is not one.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, KafkaError) and "never retrieved" in str(context.get("message", "")):
            logging.getLogger("cdr_stream.kafka").debug("abandoned Kafka request ended: %s", describe_error(error))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
