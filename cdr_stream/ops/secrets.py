"""Masking secrets (feed, SFTP and SASL passwords) in text meant for people: log lines, error messages.

A secret can show in more forms than the one configured: a feed's error page may echo the form body
(URL-encoded), JSON or HTML escapes it, and repr() escapes each of those again. Every form is masked.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"


def secret_forms(secret: str) -> list[str]:
    """The ways a page or a message can show a secret: plain, as the form body carried it (URL-encoded),
    escaped for JSON or HTML, and each of those escaped again by repr() (describe_body quotes with it).
    Longest first, so that each is masked whole."""
    if not secret:
        return []
    shown = {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1], html.escape(secret)}
    return sorted(shown | {repr(form)[1:-1] for form in shown}, key=len, reverse=True)


class SecretMask:
    """Replaces every form of the given secrets by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        forms = set(self._forms).union(*(secret_forms(secret) for secret in secrets))
        # Longest first across all secrets too, so a secret that contains another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str, *, cut_short: bool = False) -> str:
        """`cut_short`: also mask the start of a form where a quoted snippet was cut ("..."), as
        describe_body() cuts a feed's answer."""
        for form in self._forms:
            text = text.replace(form, REDACTED)
            if cut_short:
                for end in range(len(form) - 1, 0, -1):
                    text = text.replace(form[:end] + "...", REDACTED + "...")
        return text
