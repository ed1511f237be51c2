"""The chart refuses bad values: each case must make `helm template` fail with a message naming the problem.

`python dev/ops/bad_values.py HELM CHART`. values.schema.json catches types, names and unknown keys; the
chart's own checks (cdr-stream.validate in _helpers.tpl) catch what a schema cannot relate.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

FEED = {"name": "main", "url": "https://billing.example.net/billingfeed.php", "login": "1"}

# (what is wrong, values over the defaults, a fragment the error must contain)
CASES: list[tuple[str, dict[str, object], str]] = [
    ("a poll interval that is not a number", {"pollIntervalSeconds": "ten"}, "/pollIntervalSeconds"),
    ("an unknown top-level value", {"replicas": 2}, "'replicas' not allowed"),
    ("no feed", {"feeds": []}, "/feeds"),
    ("a feed name with a space", {"feeds": [{**FEED, "name": "main feed"}]}, "/feeds/0/name"),
    ("a feed URL with credentials", {"feeds": [{**FEED, "url": "https://u:p@host/feed"}]}, "/feeds/0/url"),
    ("an unknown feed option", {"feeds": [{**FEED, "options": {"pasword": "x"}}]}, "'pasword' not allowed"),
    ("a login given as a number", {"feeds": [{**FEED, "login": 81234567}]}, "/feeds/0/login"),
    ("a log level in lower case", {"log": {"level": "info"}}, "/log/level"),
    ("SASL without a user name", {"kafka": {"sasl": {"mechanism": "SCRAM-SHA-512"}}}, "/kafka/sasl/username"),
    (
        "an alert threshold as text",
        {"prometheusRule": {"alerts": {"dataStale": {"thresholdSeconds": "2h"}}}},
        "/prometheusRule/alerts/dataStale",
    ),
    (
        "two feeds with one name",
        {"feeds": [FEED, {**FEED, "url": "https://other.example.net/feed"}]},
        'the name "main" is used twice',
    ),
    (
        "a grace period shorter than the shutdown",
        {"terminationGracePeriodSeconds": 30, "shutdownTimeoutSeconds": 30},
        "terminationGracePeriodSeconds (30) must be at least shutdownTimeoutSeconds (30) + 10",
    ),
    (
        "a chart-made Secret without a feed's password",
        {"credentials": {"create": True, "data": {"other": "x"}}},
        'credentials.data has no key "main-password"',
    ),
    ("a CA Secret without TLS", {"kafka": {"tls": {"caSecret": {"name": "kafka-ca"}}}}, "need kafka.tls.enabled: true"),
    (
        "a disruption budget of minus one pod",
        {"podDisruptionBudget": {"minAvailable": -1}},
        "/podDisruptionBudget/minAvailable",
    ),
]


def main() -> int:
    helm, chart = sys.argv[1], sys.argv[2]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, (what, values, expected) in enumerate(CASES):
            path = Path(tmp, f"case{number}.yaml")
            path.write_text(yaml.safe_dump(values), encoding="utf-8")
            result = subprocess.run(
                [helm, "template", "cdr-stream", chart, "--values", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0:
                failures.append(f"{what}: helm template accepted {values}")
            elif expected not in result.stderr:
                failures.append(f"{what}: the error does not say {expected!r}:\n{result.stderr.strip()}")
            else:
                print(f"refused: {what}")
    for failure in failures:
        print(f"NOT REFUSED AS EXPECTED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
