"""Check, offline, that the image's lock files still match pyproject.toml.

Every runtime dependency of [project] must be pinned in requirements.lock, and every [build-system]
requirement in requirements-build.lock, at a version its specifier allows, and every pin must carry
hashes (the Dockerfile installs with --require-hashes). Refresh both with dev/ops/lock.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def read_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes)."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
            pins[current] = (Version(match["version"]), 0)
        elif current and line.strip().startswith("--hash="):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def problems(requirements: list[str], lock: Path) -> list[str]:
    pins = read_lock(lock)
    found = [f"{lock.name}: {name}=={version} has no --hash" for name, (version, n) in pins.items() if n == 0]
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{lock.name}: {requirement.name} (from pyproject.toml: {text!r}) is not pinned")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            found.append(f"{lock.name}: {requirement.name}=={pins[name][0]} does not satisfy {text!r}")
    return found


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = problems(project["project"]["dependencies"], ROOT / "requirements.lock")
    found += problems(project["build-system"]["requires"], ROOT / "requirements-build.lock")
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print("refresh the locks with dev/ops/lock and commit them", file=sys.stderr)
        return 1
    print("requirements.lock and requirements-build.lock pin every requirement of pyproject.toml, with hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
