"""Scan captured output for secrets: log lines, exception texts, process output, and (later) metrics.

`assert_no_secrets(text, secrets)` takes any text blob; the other helpers gather one from pytest's
capture fixtures or a finished process. A secret is looked for as is and in the forms it could take
on its way out: URL-encoded (a form body echoed back), JSON- or repr-escaped, base64 (a basic-auth
header); and any 8 characters in a row of those count, since a snippet cut short can show a part.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

import pytest


def secret_forms(secret: str) -> set[str]:
    """The secret and its encoded forms, each also escaped by repr() (a quoted snippet)."""
    forms = {
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        html.escape(secret),
        base64.b64encode(secret.encode()).decode(),
    }
    return forms | {repr(form)[1:-1] for form in forms}


#: A run this long of a secret's form counts as a leak: a quoted snippet cut off mid-secret leaks its start.
PARTIAL: Final = 8


def _pieces(form: str) -> set[str]:
    if len(form) <= PARTIAL:
        return {form}
    return {form[start : start + PARTIAL] for start in range(len(form) - PARTIAL + 1)}


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (by their plain text) that appear in `text` in any form, whole or in part."""
    return [
        secret for secret in secrets if any(piece in text for form in secret_forms(secret) for piece in _pieces(form))
    ]


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
    """str, repr and args of an exception and of the causes and contexts its traceback would show."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args)]
        # As a traceback shows it: a context hidden by "raise ... from None" is not part of the text.
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n".join(parts)
