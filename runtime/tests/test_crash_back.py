"""kill -9 of rvd_back in the middle of a clone, on a REAL libvirtd + KVM.

After a restart the interrupted request is ended (failed "interrupted", or retried for
the commands safe to repeat) and libvirt's domains and pool volumes agree with the DB:
nothing orphaned, nothing missing. Skips (with the reason) where KVM cannot run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from kvm import POOL, URI
from sqlalchemy import select

from ravada import queue
from ravada.db import Backend, Database, Machine, Request, User
from ravada.db.migrate import upgrade
from ravada.virt import GuestNotFound, Host

pytestmark = pytest.mark.kvm
RVD_BACK = str(Path(sys.executable).with_name("rvd_back"))


class Backend_:
    """rvd_back as a subprocess on qemu:///system."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.conf = tmp_path / "ravada.yml"
        self.sock = str(tmp_path / "queue.sock")
        self.conf.write_text(yaml.safe_dump({
            "database": {"url": f"sqlite:///{tmp_path / 'ravada.db'}"},
            "libvirt": {"uri": URI, "storage_pool": POOL},
            "queue": {"socket": self.sock},
            "display": {"listen": "127.0.0.1"},
            "firewall": {"enabled": False},
            "log_level": "DEBUG",
        }))
        self.db = Database(f"sqlite:///{tmp_path / 'ravada.db'}")
        upgrade(self.db.engine)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.tmp / f"rvd_back-{self.runs}.log", "wb")
        self.proc = subprocess.Popen([RVD_BACK, "--config", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        pid = self.proc.pid
        wait_until(lambda: self._registered(pid), 60, "rvd_back did not start")

    def _registered(self, pid: int) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        with self.db.session() as s:
            return any(n.endswith(f":{pid}") for n in s.scalars(select(Backend.name)))

    def log(self) -> str:
        return (self.tmp / f"rvd_back-{self.runs}.log").read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(60) == 0, self.log()

    def run(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> Request:
        req = queue.wait_for(self.db, queue.submit(self.db, self.sock, command, args, **kw), 120)
        assert req.status in queue.FINAL, f"{command} still {req.status}\n{self.log()}"
        return req

    def ok(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        req = self.run(command, args, **kw)
        assert req.status == "done", f"{command}: {req.error}\n{self.log()}"
        return req.result or {}


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(interval)
    return value


@pytest.fixture
def back(kvm_host: Host, tmp_path: Path) -> Iterator[Backend_]:
    b = Backend_(tmp_path)
    yield b
    b.stop()
    # whatever a failed test left: remove our machines (prefix "crash")
    conn = kvm_host.conn()
    for dom in conn.listAllDomains(0):
        if dom.name().startswith("crash"):
            try:
                kvm_host.guest(dom.name()).remove(kvm_host.storage)
            except GuestNotFound:
                pass
    for vol in kvm_host.storage.pool().listAllVolumes(0):
        if vol.name().startswith("crash"):
            vol.delete(0)
    b.db.dispose()


def add_user(db: Database, name: str) -> int:
    """A plain user row (the owner of the clones); returns its id."""
    with db.session() as s:
        user = User(name=name)
        s.add(user)
        s.flush()
        return user.id


def assert_consistent(host: Host, db: Database, prefix: str) -> None:
    """libvirt domains and pool volumes of ours match the machine rows exactly."""
    pool = host.storage.pool()
    pool.refresh(0)
    vols = {v for v in pool.listVolumes() if v.startswith(prefix)}
    doms = {d.name() for d in host.conn().listAllDomains(0) if d.name().startswith(prefix)}
    with db.session() as s:
        rows = s.scalars(select(Machine).where(Machine.name.like(prefix + "%"))).all()
        assert all(m.state not in ("creating", "removing") for m in rows), \
            [(m.name, m.state) for m in rows]
        names = {m.name for m in rows}
        expected_vols = {f"{m.name}.base.qcow2" if m.is_base else f"{m.name}.qcow2"
                         for m in rows}
        states = {m.name: m.state for m in rows}
    assert doms == names
    assert vols == expected_vols
    live = host.list_guests()
    assert {n: live[n] for n in names} == states


@pytest.mark.parametrize("kill_when", ["clone row appears", "request started"])
def test_kill_during_clone_leaves_nothing_orphaned(back: Backend_, kvm_host: Host,
                                                   kill_when: str) -> None:
    prefix = "crash" + uuid.uuid4().hex[:6]
    base_name = prefix + "base"
    uid = add_user(back.db, "zoe")
    back.start()
    base = back.ok("create", {"name": base_name, "disk_gb": 1, "memory_mb": 256})["machine_id"]
    back.ok("prepare_base", machine_id=base)

    rid = queue.submit(back.db, back.sock, "clone", {"user_id": uid, "start": True},
                       machine_id=base)

    def clone_row() -> bool:
        with back.db.session() as s:
            return s.scalar(select(Machine.id).where(Machine.base_id == base)) is not None

    def started() -> bool:
        with back.db.session() as s:
            return s.get(Request, rid).started_at is not None

    wait_until(clone_row if kill_when == "clone row appears" else started, 60,
               f"never saw: {kill_when}", interval=0.001)
    back.kill9()
    with back.db.session() as s:
        assert s.get(Request, rid).status in ("working", "done")

    back.start()
    req = queue.wait_for(back.db, rid, 60)
    assert req.status in queue.FINAL
    if req.status == "failed":
        assert req.error == "interrupted", req.error
    assert_consistent(kvm_host, back.db, prefix)

    # the user clicks again: a working, running clone
    again = back.ok("clone", {"user_id": uid, "start": True}, machine_id=base)
    with back.db.session() as s:
        clone = s.get(Machine, again["machine_id"])
        assert (clone.name, clone.state) == (f"{base_name}-zoe", "running")
        assert clone.display and clone.display["spice"] and clone.display["vnc"]
    assert kvm_host.guest(clone.name).state() == "running"
    assert_consistent(kvm_host, back.db, prefix)

    back.ok("shutdown", {"timeout": 2}, machine_id=clone.id)
    back.ok("remove", machine_id=clone.id)
    back.ok("remove", machine_id=base)
    assert_consistent(kvm_host, back.db, prefix)
    with pytest.raises(libvirt.libvirtError):
        kvm_host.conn().lookupByName(clone.name)
    back.stop()


def test_open_display_on_kvm(back: Backend_, kvm_host: Host) -> None:
    """The user's click on real KVM: clone + start + display password + connection info."""
    prefix = "crash" + uuid.uuid4().hex[:6]
    uid = add_user(back.db, "yan")
    back.start()
    base = back.ok("create", {"name": prefix + "b", "disk_gb": 1, "memory_mb": 256})
    back.ok("prepare_base", machine_id=base["machine_id"])
    req = back.run("clone", {"user_id": uid, "client_ip": "192.0.2.10"},
                   machine_id=base["machine_id"])
    with back.db.session() as s:
        clone = s.scalar(select(Machine).where(Machine.base_id == base["machine_id"]))
    try:
        assert req.status == "done", req.error
        info = req.result["display"]
        assert info["host"] == "127.0.0.1" and len(info["password"]) >= 16
        assert info["spice"]["port"] == clone.display["spice"]
        assert info["vnc"]["port"] == clone.display["vnc"]
        assert info["vnc"]["password"] == info["password"][:8]
    finally:
        back.ok("force_shutdown", machine_id=clone.id)
        back.ok("remove", machine_id=clone.id)
        back.ok("remove", machine_id=base["machine_id"])
        assert_consistent(kvm_host, back.db, prefix)
