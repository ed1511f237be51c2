"""Logging setup: one line per event, as JSON (for log collectors) or text (for people at a terminal).

Structured fields a record carries in `extra` (feed, IDs, durations...) become JSON keys, or `key=value`
pairs after a text line. Every configured secret is replaced by `***` in the final line, whatever logger
(ours, aiohttp's, aiokafka's) produced it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import orjson

LogFormat = Literal["auto", "json", "text"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
REDACTED = "***"


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class TextFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
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
        line = orjson.dumps(entry, default=str).decode()
        return self.redact(line)


def configure_logging(level: str = "INFO", fmt: LogFormat = "text", secrets: Iterable[str] = ()) -> None:
    """Log to stderr; `auto` means text on a terminal and JSON lines otherwise."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every retry of a lost connection at ERROR; the connector reports those itself.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # One line per request to /metrics and the probes would drown the connector's own lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # asyncssh logs every SFTP request at INFO; the SFTP source reports what matters itself.
    logging.getLogger("asyncssh").setLevel(max(logging.getLevelName(level), logging.WARNING))


def describe_error(exc: BaseException) -> str:
    """`Type: message`, once: Kafka's errors already start their message with their type."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
