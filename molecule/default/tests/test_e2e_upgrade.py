"""Re-runs and the upgrade path (issue #5, part 6), from the controller.

1. Re-running ``site.yml`` against the converged host changes 0 tasks, and the
   machines (database rows and libvirt domains) made by test_e2e.py survive.
2. Upgrade: the runtime's version is bumped in a COPY of ``runtime/``
   (``-e rvd_runtime_source=<copy>``); the run installs it, restarts each rvd
   service exactly once, and keeps the data. A third run with the same copy
   changes 0 tasks again.

Each run of the playbook takes minutes, so this runs on the first platform
only; ``RAVADA_E2E_UPGRADE=0`` skips it, ``=all`` runs it on every platform.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e import api as api_mod
from e2e.target import FIRST_PLATFORM, Target

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("rvd_back", "rvd_front", "rvd_console")
MODE = os.environ.get("RAVADA_E2E_UPGRADE", "first")
pytestmark = [
    pytest.mark.skipif(MODE == "0", reason="RAVADA_E2E_UPGRADE=0"),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module")
def target(host) -> Target:
    t = Target.from_host(host)
    if MODE != "all" and t.name != FIRST_PLATFORM:
        pytest.skip(f"upgrade path runs on {FIRST_PLATFORM} only (RAVADA_E2E_UPGRADE=all: all)")
    return t


@pytest.fixture(scope="module")
def inventory(request) -> str:
    inv = request.config.option.ansible_inventory
    if not inv:
        pytest.skip("no --ansible-inventory (run through molecule verify)")
    return inv


def run_site(inventory: str, limit: str, *extra: str) -> dict[str, int]:
    """``ansible-playbook site.yml`` against the molecule inventory; the host's recap counts."""
    playbook = Path(sys.executable).with_name("ansible-playbook")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run([str(playbook), "-i", inventory, "--limit", limit, "site.yml", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    recap = re.search(rf"^{re.escape(limit)}\s*:\s*(.*)$", proc.stdout, re.MULTILINE)
    assert proc.returncode == 0 and recap, (
        f"site.yml failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    counts["_changed_tasks"] = [line for line in proc.stdout.splitlines()  # type: ignore[assignment]
                                if line.startswith("changed:")]
    return counts


def snapshot(target: Target) -> dict[str, Any]:
    """What must survive: machine rows (through the API, a fresh login) and libvirt domains."""
    admin = api_mod.Api(target.ip).login(target.var("rvd_admin_user"),
                                         target.var("rvd_admin_password"))
    machines = {m["id"]: (m["name"], m["owner_id"], m["is_base"]) for m in admin.machines()}
    domains = set(target.run("virsh list --all --name").stdout.split())
    return {"machines": machines, "domains": domains}


def service_starts(target: Target, since: float) -> dict[str, int]:
    """How many times each rvd unit was started since the epoch time *since* (journal)."""
    out = {}
    for unit in SERVICES:
        log = target.host.run(f"journalctl -u {unit} --since @{int(since)} -o cat --no-pager")
        out[unit] = sum(1 for line in log.stdout.splitlines() if line.startswith("Started "))
    return out


def invocation(target: Target) -> dict[str, str]:
    return {u: target.run(f"systemctl show -p InvocationID --value {u}").stdout.strip()
            for u in SERVICES}


def test_rerun_changes_nothing_and_keeps_the_data(target, inventory):
    before = snapshot(target)
    assert before["machines"], "no machines to protect: run test_e2e.py first"
    counts = run_site(inventory, target.name)
    assert counts["changed"] == 0, f"re-run changed tasks: {counts['_changed_tasks']}"
    after = snapshot(target)
    assert after["machines"] == before["machines"]
    assert before["domains"] <= after["domains"]


def test_upgrade_restarts_services_once_and_keeps_the_data(target, inventory, tmp_path):
    before = snapshot(target)
    ids_before = invocation(target)
    copy = tmp_path / "runtime"
    shutil.copytree(REPO / "runtime", copy, ignore=shutil.ignore_patterns(
        ".venv", "__pycache__", "*.egg-info", ".pytest_cache", "build", "dist"))
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    stamp = int(time.time())
    bumped, n = re.subn(r'^version = "([^"]+)"', lambda m: f'version = "{m[1]}.post{stamp}"',
                        text, count=1, flags=re.MULTILINE)
    assert n == 1, "no version = line in runtime/pyproject.toml"
    pyproject.write_text(bumped)
    since = float(target.run("date +%s").stdout) - 1
    counts = run_site(inventory, target.name, "-e", f"rvd_runtime_source={copy}")
    assert counts["changed"] > 0, "bumping the runtime version changed nothing"
    ids_after = invocation(target)
    assert all(ids_after[u] != ids_before[u] for u in SERVICES), (ids_before, ids_after)
    starts = service_starts(target, since)
    assert all(n == 1 for n in starts.values()), f"starts per unit since upgrade: {starts}"
    after = snapshot(target)
    assert after["machines"] == before["machines"]
    assert before["domains"] <= after["domains"]
    again = run_site(inventory, target.name, "-e", f"rvd_runtime_source={copy}")
    assert again["changed"] == 0, f"second upgrade run changed: {again['_changed_tasks']}"
