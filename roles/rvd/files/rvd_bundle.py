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
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
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


def download_wheels(reqs: list[str], cache: Path, python: str, arch: str) -> list[Path]:
    """pip download for the server's interpreter, once per dependency set.

    Each set has a directory of its own (named by its key) that appears whole, by a
    rename, only after pip finished: two checkouts with different dependencies, or two
    playbooks at once, never bundle each other's wheels or a half-downloaded set.
    """
    key = hashlib.sha256(json.dumps([reqs, python, arch]).encode()).hexdigest()[:16]
    dest = cache / "wheels" / key
    if dest.is_dir():
        return sorted(dest.glob("*.whl"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
    abi = "cp" + python.replace(".", "")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
        "--abi", abi, "--abi", "abi3", "--abi", "none", "--dest", str(work),
    ]
    for tag in MANYLINUX:
        cmd += ["--platform", f"{tag}_{arch}"]
    cmd += ["--platform", "any"]
    try:
        subprocess.run(cmd + reqs, check=True, stdout=sys.stderr)
        work.rename(dest)
    except OSError:
        if not dest.is_dir():  # not another run's set, finished first: a real error
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(dest.glob("*.whl"))


def prune(cache: Path, keep: Path, max_age: float = 86400.0) -> None:
    """Drop bundles not built for a day (another run may still be copying a newer one)."""
    now = time.time()
    for old in cache.glob("ravada-bundle-*.tar"):
        try:
            if old != keep and now - old.stat().st_mtime > max_age:
                old.unlink()
        except FileNotFoundError:
            pass


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
        wheels = download_wheels(reqs, cache, args.python, args.arch)

    # Written under a private name, then named by its checksum: a playbook copies the
    # bundle it built even when another checkout builds one at the same time.
    fd, tmp_name = tempfile.mkstemp(prefix=".bundle-", suffix=".tmp", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                                      format=tarfile.GNU_FORMAT) as tar:
            for path in source_files(source):
                add_file(tar, path, "src/" + path.relative_to(source).as_posix())
            for path in wheels:
                add_file(tar, path, "wheels/" + path.name)
        tmp.chmod(0o644)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        bundle = cache / f"ravada-bundle-{args.mode}-{digest[:16]}.tar"
        tmp.replace(bundle)
    finally:
        tmp.unlink(missing_ok=True)
    prune(cache, keep=bundle)
    print(json.dumps({"path": str(bundle), "sha256": digest, "version": version,
                      "wheels": len(wheels)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
