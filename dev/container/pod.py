"""Runs the image the way the chart's Deployment runs it, in the private engine (dev/container/engine).

Everything comes from the chart rendered by `helm template`: the image, args and environment of the
container; its user, group and fsGroup, read-only root filesystem, dropped capabilities, no privilege
escalation and seccomp profile; its ConfigMap and Secret volumes as read-only files at their mount paths
(Secret files owned by root:fsGroup with the volume's defaultMode, as the kubelet makes them); the emptyDir
as a tmpfs of its size limit; the memory limit; and terminationGracePeriodSeconds as the stop timeout. A pod
setting that a plain container cannot reproduce is refused, never silently dropped.

    dev/container/run --values VALUES.yaml [--name NAME] [-- ARGS...]   (ARGS replace the chart's args)

The tests (tests/integration/test_container.py) use the same translation.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "cdr-stream"
HELM = ROOT / ".cache" / "bin" / "helm"
STATE = Path(os.environ.get("CDR_STREAM_CONTAINER_STATE", ROOT / ".cache" / "container"))
DOCKER = "/usr/bin/docker"
RELEASE = "cdr-stream"
NAMESPACE = "cdr"
CONTAINER = "cdr-stream"


class PodSettingError(ValueError):
    """A pod setting of the rendered chart that a plain container cannot reproduce."""


def docker_env() -> dict[str, str]:
    """The environment for the docker client: the private engine's socket."""
    return {**os.environ, "DOCKER_HOST": f"unix://{STATE / 'docker.sock'}"}


def render(values_file: Path) -> list[dict[str, Any]]:
    """The chart's manifests for these values, as `helm template` renders them."""
    result = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for doc in manifests:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    return None


def _object_data(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, bytes]:
    doc = _find(manifests, kind, name)
    if doc is None:
        raise PodSettingError(f"the pod mounts {kind} {name}, which this rendering does not make")
    if kind == "Secret":
        encoded: dict[str, str] = doc.get("data") or {}
        return {key: base64.b64decode(value) for key, value in encoded.items()}
    return {key: str(value).encode() for key, value in (doc.get("data") or {}).items()}


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


@dataclass
class PodRun:
    """The `docker run` equivalent of the chart's Deployment: its arguments and the files it mounts."""

    image: str
    args: list[str]
    user: int
    group: int
    fs_group: int | None
    grace_seconds: int
    options: list[str] = field(default_factory=list)
    # host file -> (content, mode): written by `materialize` before the run
    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)
    mount_paths: list[PurePosixPath] = field(default_factory=list)

    def materialize(self) -> None:
        """Write the ConfigMap and Secret files, owned by root and the fsGroup as the kubelet makes them."""
        for path, (content, mode) in self.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o755)
            path.write_bytes(content)
            if self.fs_group is not None and os.geteuid() == 0:
                os.chown(path, 0, self.fs_group)
            path.chmod(mode)

    def docker_args(self, name: str, *, detach: bool = False, args: list[str] | None = None) -> list[str]:
        """`docker run` arguments (after the docker command); args replace the chart's container args."""
        run = ["run", "--name", name, *(["--detach"] if detach else ["--rm"]), *self.options]
        return [*run, self.image, *(self.args if args is None else args)]


def _security(pod: dict[str, Any], container: dict[str, Any]) -> tuple[list[str], int, int, int | None]:
    pod_context: dict[str, Any] = pod.get("securityContext") or {}
    context = {**pod_context, **(container.get("securityContext") or {})}
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if user is None or group is None:
        raise PodSettingError("the pod must name its runAsUser and runAsGroup: the image's user is not checked")
    if context.get("runAsNonRoot") and user == 0:
        raise PodSettingError("runAsNonRoot with runAsUser 0")
    if context.get("privileged"):
        raise PodSettingError("a privileged container")
    fs_group = pod_context.get("fsGroup")
    options = ["--user", f"{user}:{group}"]
    if fs_group is not None:
        options += ["--group-add", str(fs_group)]
    for extra in pod_context.get("supplementalGroups") or []:
        options += ["--group-add", str(extra)]
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities") or {}
    options += [f"--cap-drop={cap}" for cap in capabilities.get("drop") or []]
    options += [f"--cap-add={cap}" for cap in capabilities.get("add") or []]
    seccomp = (context.get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault"):
        raise PodSettingError(f"seccompProfile {seccomp}: only the runtime's default profile is reproduced")
    return options, user, group, fs_group


def pod_run(manifests: list[dict[str, Any]], files_dir: Path) -> PodRun:
    """The chart's connector pod as a `docker run`, its mounted files laid out under files_dir."""
    deployment = _find(manifests, "Deployment", RELEASE)
    if deployment is None:
        raise PodSettingError(f"no Deployment {RELEASE} in the rendering")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == CONTAINER]
    options, user, group, fs_group = _security(pod, container)
    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    run = PodRun(container["image"], list(container.get("args") or []), user, group, fs_group, grace)
    # Host network: the engine has no bridge; the connector's HTTP port is the one its configuration names.
    run.options += ["--network", "host", *options, "--stop-timeout", str(grace)]
    for variable in container.get("env") or []:
        if "value" not in variable:
            raise PodSettingError(f"env {variable['name']} comes from {list(variable)}: not reproduced")
        run.options += ["--env", f"{variable['name']}={variable['value']}"]
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if memory:
        run.options += ["--memory", str(_quantity_bytes(str(memory)))]
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        target = PurePosixPath(mount["mountPath"])
        run.mount_paths.append(target)
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            tmpfs = f"{target}:rw,nosuid,nodev,mode=1777" + (f",size={_quantity_bytes(str(size))}" if size else "")
            run.options += ["--tmpfs", tmpfs]
            continue
        host_dir = files_dir / mount["name"]
        _volume_files(manifests, volume, host_dir, run)
        read_only = ",readonly" if mount.get("readOnly") else ""
        run.options += ["--mount", f"type=bind,source={host_dir},target={target}{read_only}"]
    return run


def _volume_files(manifests: list[dict[str, Any]], volume: dict[str, Any], host_dir: Path, run: PodRun) -> None:
    if "projected" in volume:
        default_mode = int(volume["projected"].get("defaultMode", 0o644))
        sources = volume["projected"]["sources"]
    elif "configMap" in volume or "secret" in volume:
        default_mode = int((volume.get("configMap") or volume.get("secret") or {}).get("defaultMode", 0o644))
        sources = [volume]
    else:
        raise PodSettingError(f"volume {volume['name']}: only ConfigMap, Secret and emptyDir volumes are reproduced")
    for source in sources:
        kind = "ConfigMap" if "configMap" in source else "Secret"
        spec = source["configMap"] if kind == "ConfigMap" else source["secret"]
        name = spec.get("name") or spec.get("secretName")
        data = _object_data(manifests, kind, name)
        items = spec.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                raise PodSettingError(f"{kind} {name} has no key {item['key']}: the pod would not start")
            mode = int(item.get("mode", default_mode))
            run.files[host_dir / item["path"]] = (data[item["key"]], mode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev/container/run", description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, required=True, help="the chart values to render")
    parser.add_argument("--name", default="cdr-stream", help="the container name")
    parser.add_argument("args", nargs="*", help="replace the chart's container args")
    options = parser.parse_args(argv)
    files_dir = STATE / "pods" / options.name
    run = pod_run(render(options.values), files_dir)
    run.materialize()
    command = [DOCKER, *run.docker_args(options.name, args=options.args or None)]
    print(" ".join(command), file=sys.stderr)
    return subprocess.run(command, env=docker_env(), check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
