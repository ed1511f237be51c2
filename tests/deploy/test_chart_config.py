"""The chart's rendered config.toml is a configuration the connector accepts, for http and sftp feeds alike.

Each case renders the chart with `helm template` (the helm that `make ops-check` builds into .cache/bin),
takes config.toml from the ConfigMap, puts every file it names (a password, a private key, known_hosts, a
CA) into a temporary directory with the content the pod would see there, and loads it with the connector's
own `cdr_stream.config.parse_settings`. A file the pod does not mount fails the test, and so does a setting
that the settings model refuses or reads differently from the values: the chart and the model cannot drift
apart unnoticed.
"""

from __future__ import annotations

import base64
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from cdr_stream.config import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "cdr-stream"
HELM = ROOT / ".cache" / "bin" / "helm"
RELEASE = "cdr-stream"
# The keys of an sftp block that the chart turns into files; the others are [feeds.sftp] settings as they are.
SFTP_CHART_KEYS = frozenset({"passwordKey", "privateKeyKey", "passphraseKey", "knownHosts"})

# An sftp feed with password authentication, its known_hosts from a Secret, beside an http feed in txt.
SFTP_PASSWORD: dict[str, Any] = {
    "feeds": [
        {
            "name": "files",
            "source": "sftp",
            "format": "txt",
            "sftp": {
                "host": "192.0.2.7",
                "username": "cdr",
                "passwordKey": "files-sftp-password",
                "knownHosts": {"secret": "provider-host-keys", "key": "sftp.example.net"},
            },
        },
        {"name": "web", "url": "https://billing.example.net/billingfeed.php", "login": "42", "format": "txt"},
    ],
    "credentials": {"create": True, "data": {"files-sftp-password": "sftp-pw-1", "web-password": "web-pw-2"}},
    "networkPolicy": {"enabled": True},
}


def _placeholder(kind: str, name: str, key: str) -> str:
    """The content given to a file of an object the chart does not render (the operator makes it)."""
    return f"{kind} {name}, key {key}"


@dataclass
class Mounts:
    """The files the connector's container sees, from the rendered Deployment."""

    files: dict[PurePosixPath, str] = field(default_factory=dict)
    whole: list[PurePosixPath] = field(default_factory=list)  # volumes mounted without items: any file in them

    def content(self, path: PurePosixPath) -> str:
        if path in self.files:
            return self.files[path]
        if path.parent in self.whole:
            return f"a file of the volume at {path.parent}"
        raise AssertionError(f"config.toml names {path}, which the pod does not mount")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values: maps merge key by key, anything else (a list) is replaced."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def _render(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run `make ops-check`, which builds helm into .cache/bin")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--namespace", "cdr", "--values", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(manifests: list[dict[str, Any]], kind: str, name: str = RELEASE) -> dict[str, Any]:
    (found,) = [doc for doc in manifests if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def _object_data(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, str] | None:
    """The data of a ConfigMap or Secret of the render, decoded; None when the chart does not make it."""
    for doc in manifests:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            data: dict[str, str] = doc.get("data") or {}
            if kind == "Secret":
                return {key: base64.b64decode(value).decode() for key, value in data.items()}
            return data
    return None


def _mounts(manifests: list[dict[str, Any]]) -> Mounts:
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "cdr-stream"]
    mount_paths = {m["name"]: PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]}
    mounts = Mounts()

    def add(directory: PurePosixPath, kind: str, name: str, items: list[dict[str, str]] | None) -> None:
        data = _object_data(manifests, kind, name)
        if items is None and data is None:
            mounts.whole.append(directory)
            return
        for item in items or [{"key": key, "path": key} for key in data or {}]:
            text = data[item["key"]] if data is not None else _placeholder(kind, name, item["key"])
            mounts.files[directory / item["path"]] = text

    for volume in pod["volumes"]:
        directory = mount_paths.get(volume["name"])
        if directory is None:
            continue
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            if "configMap" in source:
                add(directory, "ConfigMap", source["configMap"]["name"], source["configMap"].get("items"))
            elif "secret" in source:
                secret = source["secret"]
                add(directory, "Secret", secret.get("name") or secret["secretName"], secret.get("items"))
    return mounts


def _materialize(node: Any, mounts: Mounts, root: Path) -> Any:
    """`node` with each file setting (`*file`) pointing at a copy, under `root`, of the file the pod mounts."""
    if isinstance(node, list):
        return [_materialize(item, mounts, root) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key.endswith("file") and isinstance(value, str):
            path = PurePosixPath(value)
            assert path.is_absolute(), f"{key} = {value!r} is not an absolute path"
            target = _in_pod(root, value)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(mounts.content(path), encoding="utf-8")
            result[key] = str(target)
        else:
            result[key] = _materialize(value, mounts, root)
    return result


def _load(manifests: list[dict[str, Any]], root: Path) -> Settings:
    """The rendered config.toml as the connector reads it, with the files the pod would have."""
    config = tomllib.loads(_one(manifests, "ConfigMap")["data"]["config.toml"])
    return parse_settings(_materialize(config, _mounts(manifests), root), environ={})


def _secret_text(values: dict[str, Any], key: str) -> str:
    credentials = values["credentials"]
    if credentials["create"]:
        return str(credentials["data"][key])
    return _placeholder("Secret", credentials["secretName"] or f"{RELEASE}-credentials", key)


def _in_pod(root: Path, value: str) -> Path:
    """Where `_materialize` put the pod's file `value`."""
    return root / PurePosixPath(value).relative_to("/")


def _assert_feeds_match(settings: Settings, values: dict[str, Any], root: Path) -> None:
    assert [feed.name for feed in settings.feeds] == [feed["name"] for feed in values["feeds"]]
    for wanted, feed in zip(values["feeds"], settings.feeds, strict=True):
        assert feed.source == wanted.get("source", "http")
        assert feed.format == wanted.get("format", "json")
        poll = wanted.get("pollIntervalSeconds")
        assert feed.poll_interval_seconds == (values["pollIntervalSeconds"] if poll is None else poll)
        for key, value in (wanted.get("options") or {}).items():
            assert getattr(feed, key) == (_in_pod(root, value) if key.endswith("file") else value), key
        if feed.source == "http":
            assert feed.sftp is None
            assert (feed.url, feed.login) == (wanted["url"], wanted["login"])
            assert feed.secret == _secret_text(values, wanted.get("passwordKey") or f"{feed.name}-password")
            continue
        block, sftp = wanted["sftp"], feed.sftp
        assert sftp is not None and feed.password is None
        for key, value in block.items():
            if key not in SFTP_CHART_KEYS:
                assert getattr(sftp, key) == value, key
        keys = {name: block.get(name) for name in ("passwordKey", "privateKeyKey", "passphraseKey")}
        assert sftp.password_secret == (keys["passwordKey"] and _secret_text(values, keys["passwordKey"]))
        assert sftp.passphrase_secret == (keys["passphraseKey"] and _secret_text(values, keys["passphraseKey"]))
        if keys["privateKeyKey"] is None:
            assert sftp.private_key_file is None
        else:
            assert sftp.private_key_file is not None
            assert sftp.private_key_file.read_text(encoding="utf-8") == _secret_text(values, keys["privateKeyKey"])
        known = block["knownHosts"]
        kind, name = ("ConfigMap", known["configMap"]) if "configMap" in known else ("Secret", known["secret"])
        expected = _placeholder(kind, name, known.get("key", "known_hosts"))
        assert sftp.known_hosts_file.read_text(encoding="utf-8") == expected


DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
ALL_ON: dict[str, Any] = yaml.safe_load((CHART / "ci" / "all-on-values.yaml").read_text(encoding="utf-8"))
CASES = {"defaults": {}, "all-on": ALL_ON, "sftp-password": SFTP_PASSWORD}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rendered_config_loads_with_the_connectors_settings(case: str, tmp_path: Path) -> None:
    values = _merge(DEFAULTS, CASES[case])
    settings = _load(_render(CASES[case], tmp_path), tmp_path / "pod")
    _assert_feeds_match(settings, values, tmp_path / "pod")
    sasl = values["kafka"]["sasl"]
    if sasl["mechanism"]:
        assert settings.kafka.sasl_password is not None
        assert settings.kafka.sasl_password.get_secret_value() == _secret_text(values, sasl["passwordKey"])


def test_the_all_on_values_cover_both_sources_and_a_text_format() -> None:
    feeds = ALL_ON["feeds"]
    assert {feed.get("source", "http") for feed in feeds} == {"http", "sftp"}
    assert {"json", "csv"} <= {feed.get("format", "json") for feed in feeds}
    assert any("privateKeyKey" in (feed.get("sftp") or {}) for feed in feeds)


@pytest.mark.parametrize("case", ["all-on", "sftp-password"])
def test_the_network_policy_lets_the_feeds_out_on_their_ports(case: str, tmp_path: Path) -> None:
    values = _merge(DEFAULTS, CASES[case])
    egress = _one(_render(CASES[case], tmp_path), "NetworkPolicy")["spec"]["egress"]
    sftp_ports = {feed["sftp"].get("port", 22) for feed in values["feeds"] if feed.get("source") == "sftp"}
    assert sftp_ports, "the case has an sftp feed"
    feeds_rule = egress[-1]
    assert {port["port"] for port in feeds_rule["ports"]} == set(values["networkPolicy"]["feeds"]["ports"]) | sftp_ports


def test_a_file_the_pod_does_not_mount_is_refused(tmp_path: Path) -> None:
    mounts = Mounts(files={PurePosixPath("/var/run/secrets/cdr-stream/main-password"): "pw"})
    config = {"feeds": [{"password_file": "/var/run/secrets/cdr-stream/other-password"}]}
    with pytest.raises(AssertionError, match="other-password, which the pod does not mount"):
        _materialize(config, mounts, tmp_path)
