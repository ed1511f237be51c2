"""Validate rendered Kubernetes manifests against the Kubernetes API schemas, strictly.

`python dev/ops/manifests.py --kubernetes-version 1.27 --kubernetes-version 1.37 rendered.yaml`

kubernetes-validate's own command only warns about a kind it has no schema for and exits 0, so a typo in
an apiVersion would pass. Here a missing schema is an error, except for the custom resources listed in
CUSTOM_KINDS: their schemas come from CRDs, not from Kubernetes, and kubernetes-validate has none. Those
are skipped by name (the PrometheusRule's content is checked by promtool instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

CUSTOM_KINDS = frozenset(
    {
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
)


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate(docs: list[dict[str, Any]], versions: list[str]) -> list[str]:
    """Problems found, one line each; empty when every document validates at every version."""
    problems = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS:
            print(f"skipped {_name(doc)} ({doc['apiVersion']}): a custom resource, no Kubernetes schema")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                problems.append(f"{_name(doc)} at Kubernetes {version}: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{_name(doc)}: {exc.message}")
            else:
                print(f"valid {_name(doc)} at Kubernetes {version}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", required=True, dest="versions")
    parser.add_argument("manifests", type=Path)
    args = parser.parse_args()
    docs = [doc for doc in yaml.safe_load_all(args.manifests.read_text(encoding="utf-8")) if doc]
    if not docs:
        print(f"{args.manifests}: no manifests", file=sys.stderr)
        return 1
    problems = validate(docs, args.versions)
    for problem in problems:
        print(f"INVALID {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
