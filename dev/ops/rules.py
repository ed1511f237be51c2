"""Plain Prometheus rule files from the chart, for promtool, and a check that every alert is covered.

`python dev/ops/rules.py from-chart prometheusrule.yaml rules.yaml`: the groups of the PrometheusRule that
`helm template --show-only templates/prometheusrule.yaml` rendered, as a rules file (the chart stays the
only copy of the alerts).

`python dev/ops/rules.py from-dashboard dashboard.json rules.yaml`: every panel query of the Grafana
dashboard as a recording rule, with the dashboard's variables filled in, so that `promtool check rules`
parses each one.

`python dev/ops/rules.py coverage rules.yaml alerts.test.yaml docs/operations.md`: every alert has a
severity, a summary, a description and a runbook_url whose anchor is a section of the runbook, and a unit
test where it fires and one where it stays silent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# What Grafana puts in place of its variables; any value that keeps the query valid PromQL will do.
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$job": ".*", "$feed": ".*"}


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the chart's PromQL) as literal blocks, as they read in the chart."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def rules_from_chart(rendered: str) -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    rules = [doc for doc in docs if doc.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise ValueError(f"expected one PrometheusRule in the rendered chart, found {len(rules)}")
    groups = rules[0]["spec"]["groups"]
    if not groups or not all(group.get("rules") for group in groups):
        raise ValueError("the PrometheusRule has an empty group")
    return {"groups": groups}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def rules_from_dashboard(dashboard: dict[str, Any]) -> dict[str, Any]:
    rules = []
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            raise ValueError(f"panel {panel['id']} ({panel['title']!r}) has no query")
        for target in targets:
            expr = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(variable, value)
            unknown = re.findall(r"\$\w+", expr)
            if unknown:
                raise ValueError(f"panel {panel['id']} ({panel['title']!r}) uses unknown variables {unknown}")
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def coverage(rules: dict[str, Any], tests: dict[str, Any], runbook: str) -> list[str]:
    """Each alert: labelled and annotated, tested firing and silent, with a runbook section to point at."""
    anchors = {_slug(line.lstrip("#")) for line in runbook.splitlines() if line.startswith("#")}
    cases: dict[str, list[bool]] = {}
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    problems = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            annotations = rule.get("annotations", {})
            missing = [key for key in ("summary", "description", "runbook_url") if not annotations.get(key)]
            if "severity" not in rule.get("labels", {}):
                missing.append("the severity label")
            if missing:
                problems.append(f"{name} lacks {', '.join(missing)}")
            anchor = annotations.get("runbook_url", "").rpartition("#")[2]
            if anchor != name.lower() or anchor not in anchors:
                problems.append(f"{name}: runbook_url anchor {anchor!r} is not a section of the runbook")
            if True not in cases.get(name, []):
                problems.append(f"{name}: no unit test where it fires")
            if False not in cases.get(name, []):
                problems.append(f"{name}: no unit test where it stays silent")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("from-chart", "from-dashboard"):
        extract = sub.add_parser(command)
        extract.add_argument("input", type=Path)
        extract.add_argument("output", type=Path)
    check = sub.add_parser("coverage")
    check.add_argument("rules", type=Path)
    check.add_argument("tests", type=Path)
    check.add_argument("runbook", type=Path)
    args = parser.parse_args()
    if args.command == "coverage":
        problems = coverage(
            yaml.safe_load(args.rules.read_text(encoding="utf-8")),
            yaml.safe_load(args.tests.read_text(encoding="utf-8")),
            args.runbook.read_text(encoding="utf-8"),
        )
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("every alert has its labels and annotations, a runbook section, and tests firing and silent")
        return 1 if problems else 0
    text = args.input.read_text(encoding="utf-8")
    try:
        rules = rules_from_chart(text) if args.command == "from-chart" else rules_from_dashboard(json.loads(text))
    except (ValueError, KeyError) as exc:
        print(f"{args.input}: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(yaml.dump(rules, Dumper=_Dumper, sort_keys=False, width=200), encoding="utf-8")
    count = sum(len(group["rules"]) for group in rules["groups"])
    print(f"{args.output}: {count} rules from {args.input}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
