"""The chart README lists every value of values.yaml (dev/ops/values_doc.py), and the check notices when not."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "cdr-stream"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("values_doc", ROOT / "dev" / "ops" / "values_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


values_doc = _load()


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    copy = tmp_path / "chart"
    copy.mkdir()
    for name in ("values.yaml", "values.schema.json", "README.md"):
        shutil.copy(CHART / name, copy / name)
    return copy


def test_the_chart_readme_lists_every_value() -> None:
    assert values_doc.check(CHART) == []
    listed = {row.path for row in values_doc.rows(CHART)}
    assert {"feeds", "feeds[].name", "kafka.sasl.passwordKey", "prometheusRule.alerts.dataStale.for"} <= listed


def test_a_value_missing_from_the_readme_is_named(chart: Path) -> None:
    readme = chart / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    readme.write_text("".join(line for line in lines if not line.startswith("| `log.format` |")), encoding="utf-8")
    assert values_doc.check(chart) == ["README.md does not list the value log.format"]


def test_a_changed_description_makes_the_table_stale(chart: Path) -> None:
    values = chart / "values.yaml"
    values.write_text(values.read_text(encoding="utf-8").replace("Log level:", "The log level:"), encoding="utf-8")
    (problem,) = values_doc.check(chart)
    assert "differs from values.yaml" in problem
    values_doc.write(chart)
    assert values_doc.check(chart) == []


def test_an_undocumented_value_is_an_error(chart: Path) -> None:
    values = chart / "values.yaml"
    values.write_text(values.read_text(encoding="utf-8") + "\nsurprise: 1\n", encoding="utf-8")
    with pytest.raises(values_doc.DocError, match="surprise has no `# --` description"):
        values_doc.rows(chart)


def test_a_value_the_schema_does_not_describe_is_an_error(chart: Path) -> None:
    schema_path = chart / "values.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    del schema["properties"]["log"]["properties"]["format"]
    schema_path.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(values_doc.DocError, match=r"does not describe log\.format"):
        values_doc.rows(chart)
