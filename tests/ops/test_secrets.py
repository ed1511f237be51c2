"""Every form a secret may show in (plain, URL-, JSON-, HTML-escaped, and repr() of each) is masked."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest

from cdr_stream.ops.secrets import REDACTED, SecretMask, secret_forms

# Characters that every escaping changes: a space, quotes, <, &, a backslash and a non-ASCII letter.
SECRET = 'p a"s<s>&w\\ö'
ESCAPED = {
    "url": quote_plus(SECRET),
    "url-path": quote(SECRET, safe=""),
    "json": json.dumps(SECRET)[1:-1],
    "html": html.escape(SECRET),
}


@pytest.mark.parametrize("form", ESCAPED.values(), ids=ESCAPED.keys())
def test_each_escaped_form_is_masked(form: str) -> None:
    assert form != SECRET
    masked = SecretMask([SECRET])(f"the feed echoed password={form}&fromid=1")
    assert masked == f"the feed echoed password={REDACTED}&fromid=1"


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    mask = SecretMask(["abc"])
    mask.add(["xabcx"])
    assert mask("xabcx and abc") == f"{REDACTED} and {REDACTED}"


def test_the_start_of_a_secret_cut_short_is_masked_only_when_asked() -> None:
    mask = SecretMask(["Sw0rdfish"])
    assert mask("'password=Sw0rd...'", cut_short=True) == f"'password={REDACTED}...'"
    assert mask("'password=Sw0rd...'") == "'password=Sw0rd...'"


def test_an_empty_secret_has_no_form() -> None:
    assert secret_forms("") == []
    assert SecretMask([""])("nothing to mask") == "nothing to mask"
