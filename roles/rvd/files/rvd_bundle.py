#!/usr/bin/env python3
"""Build, on the Ansible controller, the bundle the rvd role installs on servers.

The bundle is one tar file holding ``src/`` (the collection's runtime/ source) and,
in ``wheelhouse`` mode, ``wheels/`` (every dependency as a wheel for the server's
Python and architecture, downloaded once into a cache). The tar is byte-for-byte
reproducible (sorted names, fixed mtime/owner/mode), so copying it to a server
reports "changed" only when the code or the dependency set really changed.

Prints one JSON object: {"path", "sha256", "version", "wheels"}.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

EXCLUDE_DIRS = {
    "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".tox", ".venv",
    "build", "dist", "tests", ".git",
}
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".egg-info")
BUILD_REQUIREMENTS = ["setuptools>=68", "wheel"]
MANYLINUX = ["manylinux_2_17", "manylinux2014", "manylinux_2_28", "manylinux_2_34"]


def source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in EXCLUDE_DIRS and not d.endswith(EXCLUDE_SUFFIXES)
        )
        for name in sorted(filenames):
            if not name.endswith(EXCLUDE_SUFFIXES):
                files.append(Path(dirpath, name))
    return files


def requirements(source: Path) -> list[str]:
    with open(source / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    return list(project.get("dependencies", [])) + BUILD_REQUIREMENTS, project["version"]


def download_wheels(reqs: list[str], dest: Path, python: str, arch: str) -> None:
    """pip download for the server's interpreter, skipped when the set is cached."""
    key = hashlib.sha256(json.dumps([reqs, python, arch]).encode()).hexdigest()
    stamp = dest / ".complete"
    if stamp.is_file() and stamp.read_text() == key:
        return
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    abi = "cp" + python.replace(".", "")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
        "--abi", abi, "--abi", "abi3", "--abi", "none", "--dest", str(dest),
    ]
    for tag in MANYLINUX:
        cmd += ["--platform", f"{tag}_{arch}"]
    cmd += ["--platform", "any"]
    subprocess.run(cmd + reqs, check=True, stdout=sys.stderr)
    stamp.write_text(key)


def add_file(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    data = path.read_bytes()
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="runtime/ directory")
    parser.add_argument("--cache", required=True, type=Path, help="controller cache directory")
    parser.add_argument("--python", required=True, help="server Python, e.g. 3.11")
    parser.add_argument("--arch", required=True, help="server architecture, e.g. x86_64")
    parser.add_argument("--mode", choices=["wheelhouse", "online"], default="wheelhouse")
    args = parser.parse_args()

    source = args.source.resolve()
    reqs, version = requirements(source)
    flavour = f"cp{args.python.replace('.', '')}-{args.arch}"
    cache = args.cache / flavour
    cache.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    if args.mode == "wheelhouse":
        download_wheels(reqs, cache / "wheels", args.python, args.arch)
        wheels = sorted((cache / "wheels").glob("*.whl"))

    bundle = cache / f"ravada-bundle-{args.mode}.tar"
    tmp = bundle.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in source_files(source):
            add_file(tar, path, "src/" + path.relative_to(source).as_posix())
        for path in wheels:
            add_file(tar, path, "wheels/" + path.name)
    tmp.replace(bundle)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    print(json.dumps({"path": str(bundle), "sha256": digest, "version": version,
                      "wheels": len(wheels)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
