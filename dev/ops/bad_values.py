"""The chart refuses bad values: each case must make `helm template` fail with a message naming the problem.

`python dev/ops/bad_values.py HELM CHART`. values.schema.json catches types, names and unknown keys; the
chart's own checks (cdr-stream.validate in _helpers.tpl) catch what a schema cannot relate. A feed's source
and what belongs to it are checked by both; those cases also run with `--skip-schema-validation`, where the
chart's own check must refuse them with its message.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import yaml

FEED = {"name": "main", "url": "https://billing.example.net/billingfeed.php", "login": "1"}
SFTP = {"host": "sftp.example.net", "username": "1", "privateKeyKey": "main-key", "knownHosts": {"configMap": "kh"}}
SFTP_FEED = {"name": "main", "source": "sftp", "sftp": SFTP}


class Case(NamedTuple):
    what: str
    values: dict[str, object]  # over the defaults
    expected: str  # a fragment the error must contain
    without_schema: str | None = None  # the fragment with --skip-schema-validation, when the chart checks it too


def _sftp_feed(**sftp: object) -> dict[str, object]:
    """Values with one sftp feed: SFTP with the keys given replaced (None removes a key)."""
    block = {key: value for key, value in {**SFTP, **sftp}.items() if value is not None}
    return {"feeds": [{**SFTP_FEED, "sftp": block}]}


CASES: list[Case] = [
    Case("a poll interval that is not a number", {"pollIntervalSeconds": "ten"}, "/pollIntervalSeconds"),
    Case("an unknown top-level value", {"replicas": 2}, "'replicas' not allowed"),
    Case("no feed", {"feeds": []}, "/feeds"),
    Case("a feed name with a space", {"feeds": [{**FEED, "name": "main feed"}]}, "/feeds/0/name"),
    Case("a feed URL with credentials", {"feeds": [{**FEED, "url": "https://u:p@host/feed"}]}, "/feeds/0/url"),
    Case("an unknown feed option", {"feeds": [{**FEED, "options": {"pasword": "x"}}]}, "'pasword' not allowed"),
    Case("a login given as a number", {"feeds": [{**FEED, "login": 81234567}]}, "/feeds/0/login"),
    Case("a log level in lower case", {"log": {"level": "info"}}, "/log/level"),
    Case("SASL without a user name", {"kafka": {"sasl": {"mechanism": "SCRAM-SHA-512"}}}, "/kafka/sasl/username"),
    Case(
        "an alert threshold as text",
        {"prometheusRule": {"alerts": {"dataStale": {"thresholdSeconds": "2h"}}}},
        "/prometheusRule/alerts/dataStale",
    ),
    Case(
        "two feeds with one name",
        {"feeds": [FEED, {**FEED, "url": "https://other.example.net/feed"}]},
        'the name "main" is used twice',
    ),
    Case(
        "a grace period shorter than the shutdown",
        {"terminationGracePeriodSeconds": 30, "shutdownTimeoutSeconds": 30},
        "terminationGracePeriodSeconds (30) must be at least shutdownTimeoutSeconds (30) + 10",
    ),
    Case(
        "a chart-made Secret without a feed's password",
        {"credentials": {"create": True, "data": {"other": "x"}}},
        'credentials.data has no key "main-password"',
    ),
    Case(
        "a CA Secret without TLS",
        {"kafka": {"tls": {"caSecret": {"name": "kafka-ca"}}}},
        "need kafka.tls.enabled: true",
    ),
    Case(
        "a disruption budget of minus one pod",
        {"podDisruptionBudget": {"minAvailable": -1}},
        "/podDisruptionBudget/minAvailable",
    ),
    Case("an unknown format", {"feeds": [{**FEED, "format": "xml"}]}, "/feeds/0/format"),
    Case(
        "an sftp feed without known_hosts",
        _sftp_feed(knownHosts=None),
        "missing property 'knownHosts'",
        "needs sftp.knownHosts.configMap or sftp.knownHosts.secret",
    ),
    Case(
        "an sftp feed with a url",
        {"feeds": [{**SFTP_FEED, "url": FEED["url"]}]},
        "/feeds/0/url",
        "source sftp takes no url",
    ),
    Case(
        "an sftp feed with a login",
        {"feeds": [{**SFTP_FEED, "login": "1"}]},
        "/feeds/0/login",
        "source sftp takes no login",
    ),
    Case(
        "an sftp feed without its sftp block",
        {"feeds": [{"name": "main", "source": "sftp"}]},
        "missing property 'sftp'",
        "source sftp needs an sftp block",
    ),
    Case(
        "an sftp feed without credentials",
        _sftp_feed(privateKeyKey=None),
        "missing property 'privateKeyKey'",
        "needs sftp.passwordKey or sftp.privateKeyKey",
    ),
    Case(
        "a key passphrase without a private key",
        _sftp_feed(privateKeyKey=None, passwordKey="main-password", passphraseKey="main-passphrase"),
        "'privateKeyKey' required",
        "sftp.passphraseKey is set but sftp.privateKeyKey is not",
    ),
    Case(
        "a web service option on an sftp feed",
        {"feeds": [{**SFTP_FEED, "options": {"ca_file": "/etc/ca.crt"}}]},
        "/feeds/0/options/ca_file",
        "options.ca_file belongs to the web service",
    ),
    Case(
        "an http feed with an sftp block",
        {"feeds": [{**FEED, "sftp": SFTP}]},
        "/feeds/0/sftp",
        "an sftp block belongs to a feed with source: sftp",
    ),
    Case(
        "known_hosts from both a ConfigMap and a Secret",
        _sftp_feed(knownHosts={"configMap": "kh", "secret": "kh"}),
        "'oneOf' failed",
        "sftp.knownHosts names both a configMap and a secret",
    ),
    Case("an unknown source", {"feeds": [{**FEED, "source": "ftp"}]}, "/feeds/0/source", 'source "ftp" is neither'),
    Case(
        "a chart-made Secret without an sftp feed's private key",
        {**_sftp_feed(), "credentials": {"create": True, "data": {"main-password": "x"}}},
        'credentials.data has no key "main-key"',
    ),
]


def _refusal(helm: str, chart: str, values: Path, expected: str, *flags: str) -> str | None:
    """What is wrong with the refusal of `values`, or None when helm template refused them as expected."""
    result = subprocess.run(
        [helm, "template", "cdr-stream", chart, "--values", str(values), *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return "helm template accepted them"
    if expected not in result.stderr:
        return f"the error does not say {expected!r}:\n{result.stderr.strip()}"
    return None


def main() -> int:
    helm, chart = sys.argv[1], sys.argv[2]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, case in enumerate(CASES):
            path = Path(tmp, f"case{number}.yaml")
            path.write_text(yaml.safe_dump(case.values), encoding="utf-8")
            runs: list[tuple[str, str, tuple[str, ...]]] = [(case.what, case.expected, ())]
            if case.without_schema is not None:
                runs.append((f"{case.what} (schema skipped)", case.without_schema, ("--skip-schema-validation",)))
            for what, expected, flags in runs:
                problem = _refusal(helm, chart, path, expected, *flags)
                if problem is None:
                    print(f"refused: {what}")
                else:
                    failures.append(f"{what}: {problem} ({case.values})")
    for failure in failures:
        print(f"NOT REFUSED AS EXPECTED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
