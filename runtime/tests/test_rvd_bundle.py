"""The controller's runtime bundle (roles/rvd/files/rvd_bundle.py): builds of two
checkouts at the same time each hand back their own tar, named by its checksum."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "rvd" / "files" / "rvd_bundle.py"


def _checkout(tmp: Path, name: str, marker: str) -> Path:
    src = tmp / name
    src.mkdir()
    shutil.copy(REPO / "runtime" / "pyproject.toml", src / "pyproject.toml")
    (src / "src").mkdir()
    (src / "src" / "marker.py").write_text(f"MARKER = {marker!r}\n")
    return src


def _build(source: Path, cache: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, str(SCRIPT), "--source", str(source), "--cache",
                          str(cache), "--python", "3.11", "--arch", "x86_64", "--mode", "online"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_concurrent_builds_keep_their_own_bundle(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sources = [_checkout(tmp_path, f"co{i}", f"checkout {i}") for i in range(2)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: (s, _build(s, cache)), sources * 4))
    for source, info in results:
        bundle = Path(info["path"])
        assert hashlib.sha256(bundle.read_bytes()).hexdigest() == info["sha256"]
        assert bundle.name == f"ravada-bundle-online-{info['sha256'][:16]}.tar"
        with tarfile.open(bundle) as tar:
            data = tar.extractfile("src/src/marker.py").read().decode()  # type: ignore[union-attr]
        assert f"checkout {source.name[-1]}" in data, (source, data)
    assert len({info["sha256"] for _, info in results}) == 2  # reproducible per checkout
    assert not list(cache.rglob("*.tmp"))
