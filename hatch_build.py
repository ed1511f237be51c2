"""Builds the package's C extensions with the wheel, and in place for an editable install:

- `cdr_stream/records/_native*.c`: the fast path of reading and normalizing rows;
- `cdr_stream/kafka/_batches.c`: Kafka record batches of a transaction's events.

It needs a C compiler and Python's headers. Without them the build fails and says so; set
CDR_STREAM_PURE_PYTHON=1 to build without the extensions instead (the same events and batches, at a higher
CPU cost a record). `python hatch_build.py` rebuilds them in place in a source checkout.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, NamedTuple


class Extension(NamedTuple):
    """An extension module: `directory/name*.c` (and its headers) make `directory/name<EXT_SUFFIX>`."""

    directory: Path
    name: str

    def sources(self, root: Path, pattern: str = "*.[ch]") -> list[Path]:
        return sorted((root / self.directory).glob(self.name + pattern))

    def target(self, root: Path) -> Path:
        return root / self.directory / (self.name + str(sysconfig.get_config_var("EXT_SUFFIX")))


EXTENSIONS = (Extension(Path("cdr_stream/records"), "_native"), Extension(Path("cdr_stream/kafka"), "_batches"))
#: Set to 1 (or true, yes) to build, and run, without the C extensions.
PURE_PYTHON_ENV = "CDR_STREAM_PURE_PYTHON"


def pure_python() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "yes")


def source_digest(root: Path, extension: Extension) -> str:
    """The SHA-256 of an extension's source files, in name order (what its `SOURCE_SHA256` holds)."""
    digest = hashlib.sha256()
    for path in extension.sources(root):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_extension(root: Path, extension: Extension) -> Path:
    """Compile an extension next to its sources (under `root`); return the shared object's path."""
    target = extension.target(root)
    digest = source_digest(root, extension)
    compiler = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    partial = target.with_name(target.name + ".partial")
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-fno-strict-aliasing",
        "-fvisibility=hidden",
        *(f"-I{path}" for path in dict.fromkeys((sysconfig.get_path("include"), sysconfig.get_path("platinclude")))),
        f'-DNATIVE_SOURCE_SHA256="{digest}"',
        *(str(path) for path in extension.sources(root, "*.c")),
        "-o",
        str(partial),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603  # our own compile line
    except (OSError, subprocess.CalledProcessError) as exc:
        output = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(
            f"building the C extension {extension.directory / extension.name} failed: {output.strip()}\n"
            f"Install a C compiler and Python's headers, or set {PURE_PYTHON_ENV}=1 to build without it."
        ) from None
    # Renamed into place: a running process that has the old one mapped keeps its copy.
    partial.replace(target)
    return target


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py` outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling's build hook: the wheel carries the extension and a platform tag."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if pure_python():
            return
        targets = [(extension, build_extension(Path(self.root), extension)) for extension in EXTENSIONS]
        if version == "editable":
            return  # in place, next to the sources the editable install imports
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for extension, target in targets:
            build_data["force_include"][str(target)] = f"{extension.directory}/{target.name}"


if __name__ == "__main__":
    if pure_python():
        print(f"{PURE_PYTHON_ENV} is set: the C fast path is not built")
        sys.exit(0)
    for extension in EXTENSIONS:
        print(build_extension(Path(__file__).resolve().parent, extension))
