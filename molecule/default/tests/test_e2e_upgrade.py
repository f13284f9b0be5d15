"""Re-runs and the upgrade from a released commit (issue 9, item 6), from the controller.

1. Re-running ``site.yml`` against the converged host changes 0 tasks, and the
   machines (database rows and libvirt domains) made by test_e2e.py survive.
2. Upgrade from the released commit ``OLD_COMMIT`` (the last commit of the first
   development session): its tree (roles, playbook, runtime) comes out of this
   repository with ``git archive`` and deploys the host on a database of its own
   (``database_name=ravada_upgrade``, so the data of the other tests is never seen by
   older code); a user and a machine are made through that release's CLI and API.
   Then the current ``site.yml`` runs on the same database: the current runtime is
   installed, ``rvd_back --upgrade-db`` takes the schema from the release's Alembic
   head to the current one, each rvd service restarts exactly once, and the user (its
   password), the machine (row and domain), the certificates and the database password
   are still there and work.
3. The current ``site.yml`` with the usual variables brings the host back to its own
   database; the machines of test_e2e.py are all there.

Each run of the playbook takes minutes, so this runs on the first platform only;
``RAVADA_E2E_UPGRADE=0`` skips it, ``=all`` runs it on every platform.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from e2e import api as api_mod
from e2e.target import FIRST_PLATFORM, Target

REPO = Path(__file__).resolve().parents[3]
OLD_COMMIT = "dbd164d"  # "test_crash_back: one helper adds the clone owner", 2026-11-23
UPGRADE_DB = "ravada_upgrade"
SERVICES = ("rvd_back", "rvd_front", "rvd_console")
KEPT_FILES = ("/etc/pki/libvirt-spice/ca-cert.pem", "/etc/pki/libvirt-spice/server-cert.pem",
              "/etc/pki/libvirt-spice/server-key.pem", "/etc/ravada/spice-ca.pem",
              "/etc/ssl/certs/ravada-selfsigned.pem", "/etc/ssl/private/ravada-selfsigned.key",
              "/etc/ravada/db.password", "/var/lib/ravada/front.key")
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


def run_site(inventory: str, limit: str, *extra: str, root: Path = REPO) -> dict[str, Any]:
    """``ansible-playbook site.yml`` of the tree *root*; the host's recap counts."""
    playbook = Path(sys.executable).with_name("ansible-playbook")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(root / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    env.pop("RAVADA_RUNTIME_SOURCE", None)  # each tree installs its own runtime
    proc = subprocess.run([str(playbook), "-i", inventory, "--limit", limit, "site.yml", *extra],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    recap = re.search(rf"^{re.escape(limit)}\s*:\s*(.*)$", proc.stdout, re.MULTILINE)
    assert proc.returncode == 0 and recap, (
        f"site.yml of {root} failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-2000:]}")
    counts: dict[str, Any] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    task, changed = "", []
    for line in proc.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:"):
            changed.append(f"{task}: {line}")
    counts["_changed_tasks"] = changed
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


def kept_files(target: Target) -> dict[str, str]:
    out = target.run("sha256sum " + " ".join(KEPT_FILES)).stdout
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def schema_revision(target: Target, database: str) -> str:
    return target.run(f"mariadb -N -B -e 'SELECT version_num FROM {database}.alembic_version'"
                      ).stdout.strip()


def old_tree(tmp_path: Path) -> Path:
    """The released commit's tree, from this repository's history."""
    dest = tmp_path / f"ravada-{OLD_COMMIT}"
    dest.mkdir()
    archive = tmp_path / "old.tar"
    proc = subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), OLD_COMMIT],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git archive {OLD_COMMIT} (needs the history): {proc.stderr}"
    subprocess.run(["tar", "-x", "-f", str(archive), "-C", str(dest)], check=True)
    return dest


def old_head(tree: Path) -> str:
    """The Alembic head of the release: the revision no other revision points down to."""
    text = "\n".join(p.read_text() for p in
                     (tree / "runtime/src/ravada/db/migrations/versions").glob("*.py"))
    revisions = set(re.findall(r'^revision\s*=\s*["\']([^"\']+)', text, re.MULTILINE))
    pointed = set(re.findall(r'^down_revision\s*=\s*["\']([^"\']+)', text, re.MULTILINE))
    heads = revisions - pointed
    assert len(heads) == 1, heads
    return heads.pop()


def test_rerun_changes_nothing_and_keeps_the_data(target, inventory):
    before = snapshot(target)
    assert before["machines"], "no machines to protect: run test_e2e.py first"
    counts = run_site(inventory, target.name)
    assert counts["changed"] == 0, f"re-run changed tasks: {counts['_changed_tasks']}"
    after = snapshot(target)
    assert after["machines"] == before["machines"]
    assert before["domains"] <= after["domains"]


def test_upgrade_from_the_released_commit(target, inventory, tmp_path):
    ours = snapshot(target)
    files = kept_files(target)
    tree = old_tree(tmp_path)
    # The demo desktop base is the host's own: its domain exists already, so the
    # upgrade database, which has no row for it, does not register it again.
    on_upgrade_db = ("-e", f"database_name={UPGRADE_DB}", "-e", "rvd_demo_image=")
    admin_name, admin_pw = target.var("rvd_admin_user"), target.var("rvd_admin_password")
    machine_name = f"upg{int(time.time()) % 100000}"
    try:
        # 1. The release, on a database of its own (rvd_demo_iso off: its role links the
        #    ISO, which this host already has as a file).
        run_site(inventory, target.name, *on_upgrade_db, "-e", "rvd_demo_iso=false", root=tree)
        assert schema_revision(target, UPGRADE_DB) == old_head(tree)
        assert target.host.run("/opt/ravada/venv/bin/python -c 'import ravada.back.isos'").rc \
            != 0, "the release's runtime is not the one installed"
        target.run("printf %s upgrade-user-pw | rvd_back --add-user upgrader --password-file -")
        admin = api_mod.Api(target.ip).login(admin_name, admin_pw)
        created = admin.done(admin.create_machine(name=machine_name, disk_gb=1))
        machine_id = created["result"]["machine_id"]
        old_machines = {m["id"]: (m["name"], m["owner_id"]) for m in admin.machines()}
        assert machine_name in target.run("virsh list --all --name").stdout.split()

        # 2. The current code over it: a real schema migration, one restart per service.
        since = float(target.run("date +%s").stdout) - 1
        counts = run_site(inventory, target.name, *on_upgrade_db)
        assert counts["changed"] > 0
        target.run("/opt/ravada/venv/bin/python -c 'import ravada.back.isos'")  # current code
        up_to_date = target.run("rvd_back --upgrade-db").stdout
        current_head = up_to_date.rsplit(" ", 1)[-1].strip()
        assert "is up to date at" in up_to_date and current_head != old_head(tree), up_to_date
        assert schema_revision(target, UPGRADE_DB) == current_head  # a real Alembic upgrade
        starts = service_starts(target, since)
        assert all(n == 1 for n in starts.values()), f"starts per unit since upgrade: {starts}"
        user = api_mod.Api(target.ip).login("upgrader", "upgrade-user-pw")  # hash kept
        assert isinstance(user.machines(), list)
        admin = api_mod.Api(target.ip).login(admin_name, admin_pw)
        assert {m["id"]: (m["name"], m["owner_id"]) for m in admin.machines()} == old_machines
        assert machine_name in target.run("virsh list --all --name").stdout.split()
        assert kept_files(target) == files
        password = target.run("cat /etc/ravada/db.password").stdout.strip()
        conf = target.run("cat /etc/ravada.conf").stdout
        assert password and f":{password}@localhost/{UPGRADE_DB}?" in unquote(conf)
        # The upgraded deployment works on the release's data: remove its machine.
        admin.done(admin.action(machine_id, "remove"))
    finally:
        # 3. Back to the host's own database with the current code.
        run_site(inventory, target.name)
        target.host.run(f"mariadb -e 'DROP DATABASE IF EXISTS {UPGRADE_DB}'")
        target.host.run(f"virsh destroy {shlex.quote(machine_name)}; virsh undefine "
                        f"{shlex.quote(machine_name)} --remove-all-storage")
    after = snapshot(target)
    assert after["machines"] == ours["machines"]
    assert ours["domains"] <= after["domains"]
    assert kept_files(target) == files
