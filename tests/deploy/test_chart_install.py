"""The chart installed into a real Kubernetes control plane, with Pod Security "restricted" enforced.

dev/kube/cluster runs etcd, kube-apiserver and kube-controller-manager on loopback (no scheduler, no
kubelet). Every object the chart renders must be accepted by the API server, and the connector's pod,
which the Deployment and ReplicaSet controllers create, must be admitted under "restricted": a pod that
Pod Security refuses leaves a FailedCreate event and no pod, and fails the test. The `helm test` pod goes
through the same admission by a server-side dry run. The cluster failing to start fails these tests; they
never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.tools, pytest.mark.kubernetes]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "cdr-stream"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
CLUSTER = ROOT / "dev" / "kube" / "cluster"
TOOLS = ROOT / "dev" / "kube" / "tools"
BIN = ROOT / ".cache" / "bin"
RELEASE = "cdr-stream"
# The prometheus-operator CRDs of the chart's ServiceMonitor and PrometheusRule.
CRDS = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


class Cluster:
    """kubectl and helm against the test cluster."""

    def __init__(self, kubeconfig: str) -> None:
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / tool), *args], input=stdin, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{tool} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        # Pod Security in warn mode answers a would-be violation with a warning, which helm and kubectl print.
        assert "violate PodSecurity" not in result.stderr, result.stderr
        return result

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, stdin=stdin)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "--output", "json").stdout)

    def restricted_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.kubectl("label", "namespace", name, *(f"{key}={value}" for key, value in RESTRICTED.items()))
        return name

    def admitted_pod(self, namespace: str, config_checksum: str | None = None, timeout: float = 90) -> Any:
        """The connector pod the controllers made (with this config checksum); fails on a refused pod."""
        deadline = time.monotonic() + timeout
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=connector"
        while True:
            refused = self.json("get", "events", "--namespace", namespace, "--field-selector", "reason=FailedCreate")
            assert refused["items"] == [], [event["message"] for event in refused["items"]]
            for pod in self.json("get", "pods", "--namespace", namespace, "--selector", selector)["items"]:
                checksum = pod["metadata"]["annotations"].get("checksum/config")
                if config_checksum is None or checksum == config_checksum:
                    return pod
            assert time.monotonic() < deadline, f"no connector pod in {namespace} after {timeout:g} s"
            time.sleep(0.5)

    def deployment_checksum(self, namespace: str) -> str:
        deployment = self.json("get", "deployment", RELEASE, "--namespace", namespace)
        checksum: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return checksum

    def config_toml(self, namespace: str) -> str:
        text: str = self.json("get", "configmap", RELEASE, "--namespace", namespace)["data"]["config.toml"]
        return text

    def assert_all_stored(self, namespace: str) -> None:
        """Every object of the release's manifest exists in the API server."""
        manifest = self.helm("get", "manifest", RELEASE, "--namespace", namespace).stdout
        found = self.kubectl("get", "--filename", "-", "--output", "name", stdin=manifest).stdout.split()
        expected = sum(1 for line in manifest.splitlines() if line.startswith("kind: "))
        assert len(found) == expected, found

    def test_pod_admitted(self, namespace: str, *values: str) -> None:
        """The `helm test` pod, through admission by a server-side dry run (nothing runs it here)."""
        test_pod = self.helm(
            "template", RELEASE, str(CHART), "--namespace", namespace, *values,
            "--show-only", "templates/tests/test-connection.yaml",
        ).stdout  # fmt: skip
        self.kubectl("create", "--namespace", namespace, "--dry-run=server", "--filename", "-", stdin=test_pod)


def wait_established(kube: Cluster, seconds: float = 60.0) -> None:
    """The CRDs just applied are served. Right after the apply a CRD may have no status conditions yet, and
    `kubectl wait` then fails at once (".status.conditions accessor error: <nil>") instead of waiting; it
    is asked again until the deadline."""
    deadline = time.monotonic() + seconds
    argv = [str(BIN / "kubectl"), "wait", "--for", "condition=Established", "--timeout", "10s"]
    while True:
        waited = subprocess.run(
            [*argv, *(f"crd/{c}" for c in CRDS)], env=kube.env, capture_output=True, text=True, timeout=60
        )
        if waited.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the CRDs were not established within {seconds:g} s:\n{waited.stdout}\n{waited.stderr}")
        time.sleep(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = time.monotonic()
    result = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=3000, check=False)
    if result.returncode != 0:
        pytest.fail(f"dev/kube/cluster start failed:\n{result.stdout}\n{result.stderr[-4000:]}", pytrace=False)
    print(f"control plane up in {time.monotonic() - started:.0f} s")
    try:
        kube = Cluster(result.stdout.strip().splitlines()[-1])
        tools = subprocess.run([str(TOOLS), "--crds"], capture_output=True, text=True, check=True)
        files = [f"{Path(tools.stdout.strip())}/monitoring.coreos.com_{crd.split('.')[0]}.yaml" for crd in CRDS]
        kube.kubectl("apply", "--server-side", *(arg for file in files for arg in ("--filename", file)))
        wait_established(kube)
        yield kube
    finally:
        subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120, check=False)


def test_defaults_install_and_the_pod_is_admitted_under_restricted(cluster: Cluster) -> None:
    namespace = cluster.restricted_namespace("defaults")
    cluster.helm("install", RELEASE, str(CHART), "--namespace", namespace)
    cluster.assert_all_stored(namespace)
    pod = cluster.admitted_pod(namespace)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    cluster.test_pod_admitted(namespace)


def test_all_options_install_upgrade_and_rollback_under_restricted(cluster: Cluster) -> None:
    namespace = cluster.restricted_namespace("all-on")
    # The all-options values name a PriorityClass and put the monitoring objects in their own namespace.
    cluster.kubectl("apply", "--filename", "-", stdin=_priority_class("high-priority"))
    cluster.kubectl("apply", "--filename", "-", stdin=_namespace("monitoring"))

    cluster.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--values", str(ALL_ON))
    cluster.assert_all_stored(namespace)
    first = cluster.deployment_checksum(namespace)
    cluster.admitted_pod(namespace, first)
    cluster.test_pod_admitted(namespace, "--values", str(ALL_ON))
    assert 'log_level = "DEBUG"' in cluster.config_toml(namespace)

    cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", namespace, "--values", str(ALL_ON), "--set", "log.level=INFO"
    )
    assert 'log_level = "INFO"' in cluster.config_toml(namespace)
    second = cluster.deployment_checksum(namespace)
    assert second != first, "a changed configuration must roll the pod"
    cluster.admitted_pod(namespace, second)

    cluster.helm("rollback", RELEASE, "1", "--namespace", namespace)
    assert 'log_level = "DEBUG"' in cluster.config_toml(namespace)
    assert cluster.deployment_checksum(namespace) == first
    cluster.admitted_pod(namespace, first)
    history = json.loads(cluster.helm("history", RELEASE, "--namespace", namespace, "--output", "json").stdout)
    assert [(entry["revision"], entry["status"]) for entry in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    cluster.assert_all_stored(namespace)


def _priority_class(name: str) -> str:
    return f"apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {name}\nvalue: 1000000\n"


def _namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
