"""Scan captured output for secrets: log lines, exception texts, process output, and (later) metrics.

`assert_no_secrets(text, secrets)` takes any text blob; the other helpers gather one from pytest's
capture fixtures or a finished process. A secret is looked for as is and in the forms it could take
on its way out: URL-encoded (a form body echoed back), JSON- or repr-escaped, base64 (a basic-auth
header).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import pytest


def secret_forms(secret: str) -> set[str]:
    """The secret and its encoded forms (only those that differ from the plain text count twice)."""
    return {
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (by their plain text) that appear in `text` in any form."""
    return [secret for secret in secrets if any(form in text for form in secret_forms(secret))]


def assert_no_secrets(text: str, secrets: Iterable[str], where: str = "output") -> None:
    found = find_secrets(text, secrets)
    assert not found, f"{where} contains {len(found)} secret(s) (shown masked: {[s[:2] + '***' for s in found]})"


def captured_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured log record as formatted, with its exception text and structured extras."""
    lines = [caplog.text]
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.extend(f"{key}={value!r}" for key, value in vars(record).items() if key not in ("msg", "args"))
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
    return "\n".join(lines)


def captured_output(capfd: pytest.CaptureFixture[str]) -> str:
    """What this process wrote to its stdout and stderr since the last read (file descriptors included)."""
    out, err = capfd.readouterr()
    return out + err


def exception_text(exc: BaseException) -> str:
    """str, repr and the whole chain of causes and contexts of an exception."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
