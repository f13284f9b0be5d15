"""``rvd_back`` as admins run it: a subprocess per command, on SQLite and MariaDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from ravada import queue
from ravada.db import Backend, Database, Machine, Node, User
from ravada.db.migrate import head_revision
from ravada.passwords import verify_password

RVD_BACK = str(Path(sys.executable).with_name("rvd_back"))


def write_config(tmp_path: Path, db_url: str, **extra: object) -> Path:
    data = {
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default", "storage_pool": "default-pool"},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "firewall": {"enabled": False},
        "display": {"listen": "127.0.0.1"},
        **extra,
    }
    path = tmp_path / "ravada.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def rvd(conf: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RVD_BACK, "--config", str(conf), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def conf(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url)


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    p = tmp_path / "pw"
    p.write_text("correct horse battery\n")
    return p


def test_add_user_and_duplicate(conf: Path, pwfile: Path, db_url: str) -> None:
    r = rvd(conf, "--add-user", "alice", "--password-file", str(pwfile))
    assert (r.returncode, r.stdout, r.stderr) == (0, "created user alice\n", "")
    r = rvd(conf, "--add-user", "alice", "--password-file", str(pwfile))
    assert (r.returncode, r.stderr) == (1, "rvd_back: user 'alice' already exists\n")
    r = rvd(conf, "--add-user", "root", "--admin", "--password-file", "-", stdin="s3cret-pass\n")
    assert (r.returncode, r.stdout) == (0, "created user root (admin)\n")
    db = Database(db_url)
    try:
        with db.session() as s:
            alice = s.scalar(select(User).where(User.name == "alice"))
            root = s.scalar(select(User).where(User.name == "root"))
            assert alice.password_hash.startswith("$argon2id$")
            assert verify_password(alice.password_hash, "correct horse battery")
            assert not verify_password(alice.password_hash, "wrong")
            assert (alice.is_admin, root.is_admin) == (False, True)
            assert verify_password(root.password_hash, "s3cret-pass")
    finally:
        db.dispose()


def test_add_user_password_problems(conf: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    r = rvd(conf, "--add-user", "bob", "--password-file", str(short))
    assert r.returncode == 1 and "password too short" in r.stderr
    r = rvd(conf, "--add-user", "bob", "--password-file", str(tmp_path / "missing"))
    assert r.returncode == 1 and "cannot read password file" in r.stderr
    r = rvd(conf, "--add-user", "bob", stdin="")  # no terminal to prompt on
    assert r.returncode == 1 and "use --password-file" in r.stderr


def test_make_admin_remove_user(conf: Path, pwfile: Path, db_url: str) -> None:
    assert rvd(conf, "--add-user", "carol", "--password-file", str(pwfile)).returncode == 0
    r = rvd(conf, "--make-admin", "carol")
    assert (r.returncode, r.stdout) == (0, "carol is now an admin\n")
    r = rvd(conf, "--make-admin", "nobody")
    assert (r.returncode, r.stderr) == (1, "rvd_back: no user named 'nobody'\n")
    db = Database(db_url)
    try:
        with db.session() as s:
            carol = s.scalar(select(User).where(User.name == "carol"))
            assert carol.is_admin
            s.add(Machine(name="carols-desk", owner_id=carol.id, state="shutdown"))
        r = rvd(conf, "--remove-user", "carol")
        assert r.returncode == 1 and "still owns machines: carols-desk" in r.stderr
        with db.session() as s:
            s.execute(Machine.__table__.delete())
        r = rvd(conf, "--remove-user", "carol")
        assert (r.returncode, r.stdout) == (0, "removed user carol\n")
        with db.session() as s:
            assert s.scalar(select(User).where(User.name == "carol")) is None
    finally:
        db.dispose()


def test_list(conf: Path, pwfile: Path, db_url: str) -> None:
    r = rvd(conf, "--list")
    assert r.returncode == 0 and r.stdout.split() == ["ID", "NAME", "STATE", "OWNER", "BASE",
                                                      "IS_BASE", "NODE"]
    rvd(conf, "--add-user", "dave", "--password-file", str(pwfile))
    db = Database(db_url)
    try:
        with db.session() as s:
            dave = s.scalar(select(User).where(User.name == "dave"))
            base = Machine(name="deb12", state="shutdown", is_base=True)
            node = Node(name="node7")
            s.add_all([base, node])
            s.flush()
            s.add(Machine(name="deb12-dave", state="running", owner_id=dave.id, base_id=base.id,
                          node_id=node.id))
    finally:
        db.dispose()
    lines = rvd(conf, "--list").stdout.splitlines()
    assert lines[1].split()[1:] == ["deb12", "shutdown", "-", "-", "yes", "-"]
    assert lines[2].split()[1:] == ["deb12-dave", "running", "dave", "deb12", "no", "node7"]


def test_upgrade_db_is_idempotent(conf: Path) -> None:
    head = head_revision()
    r = rvd(conf, "--upgrade-db")
    assert (r.returncode, r.stdout) == (0, f"database upgraded from empty to {head}\n")
    r = rvd(conf, "--upgrade-db")
    assert (r.returncode, r.stdout) == (0, f"database is up to date at {head}\n")


def test_version_usage_and_bad_config(tmp_path: Path, conf: Path) -> None:
    r = rvd(conf, "--version")
    assert r.returncode == 0 and r.stdout.startswith("rvd_back ")
    r = rvd(conf, "--list", "--upgrade-db")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = rvd(conf, "--admin")
    assert r.returncode == 2 and "--admin goes with --add-user" in r.stderr
    r = rvd(conf, "--hibernate")
    assert r.returncode == 2 and "name the machines, or use --all" in r.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("queue:\n  wrokers: 3\n")
    r = rvd(bad, "--list")
    assert r.returncode == 1 and "queue.wrokers: unknown key" in r.stderr
    r = subprocess.run([RVD_BACK, "--list"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RAVADA_CONFIG": str(bad)})
    assert r.returncode == 1 and "queue.wrokers" in r.stderr


def test_import_domain(conf: Path, pwfile: Path, db_url: str) -> None:
    rvd(conf, "--add-user", "erin", "--password-file", str(pwfile))
    # test:///default always has a running domain named "test"
    r = rvd(conf, "--import-domain", "test", "--owner", "erin")
    assert r.returncode == 0 and r.stdout.startswith("imported test as machine ")
    db = Database(db_url)
    try:
        with db.session() as s:
            m = s.scalar(select(Machine).where(Machine.name == "test"))
            assert (m.state, m.owner.name, m.vcpus) == ("running", "erin", 2)
            assert m.memory_mb > 0 and m.domain_uuid
    finally:
        db.dispose()
    r = rvd(conf, "--import-domain", "test")
    assert r.returncode == 1 and "already managed" in r.stderr
    r = rvd(conf, "--import-domain", "nosuch")
    assert r.returncode == 1 and "no libvirt domain named 'nosuch'" in r.stderr


def test_daemon_serves_and_stops_on_sigterm(conf: Path, db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    r = rvd(conf, "--hibernate", "--all")
    assert r.returncode == 1 and "no rvd_back daemon is running" in r.stderr
    proc = subprocess.Popen([RVD_BACK, "--config", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with db.session() as s:
                if s.scalar(select(Backend.name)) is not None:
                    break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "rvd_back did not register"
            time.sleep(0.02)
        sock = str(tmp_path / "queue.sock")
        created = queue.wait_for(db, queue.submit(db, sock, "create",
                                                  {"name": "cli-vm", "disk_gb": 1}), 20)
        assert created.status == "done", created.error
        mid = created.result["machine_id"]
        assert queue.wait_for(db, queue.submit(db, sock, "start", machine_id=mid),
                              20).status == "done"
        r = rvd(conf, "--hibernate", "--all")
        assert (r.returncode, r.stdout) == (0, "hibernate cli-vm: done\n"), r.stderr
        with db.session() as s:
            assert s.get(Machine, mid).state == "hibernated"
        r = rvd(conf, "--shutdown", "no-such-vm")
        assert r.returncode == 1 and "no machine named 'no-such-vm'" in r.stderr
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "ready as" in out and "SIGTERM: stopping" in out
        with db.session() as s:
            assert s.scalar(select(Backend.name)) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        db.dispose()
