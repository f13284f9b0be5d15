"""Classroom policies on real QEMU/KVM (``-m kvm``): graphics events from a real VNC client,
the grace after it leaves, volatile clones leaving nothing behind, a pool refilling to
``pool_started`` running clones, and ``run_timeout``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kvm import POOL, URI
from sqlalchemy import select, update

from ravada import config as rconfig
from ravada import queue
from ravada.back.daemon import Daemon
from ravada.db import Database, FirewallRule, Machine, Request, User
from ravada.db.migrate import upgrade
from ravada.virt import Host

pytestmark = pytest.mark.kvm


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


class Back:
    """A daemon on qemu:///system in a thread, SQLite in tmp."""

    def __init__(self, tmp: Path) -> None:
        cfg = rconfig.from_dict({
            "database": {"url": f"sqlite:///{tmp / 'ravada.db'}"},
            "libvirt": {"uri": URI, "storage_pool": POOL},
            "queue": {"socket": str(tmp / "queue.sock"), "workers": 3,
                      "shutdown_timeout": 2},
            "display": {"listen": "127.0.0.1"},
            "firewall": {"enabled": False},
        })
        self.db = Database(cfg.database.url)
        upgrade(self.db.engine)
        self.sock = cfg.queue.socket
        self.daemon = Daemon(cfg, db=self.db, screenshot_dir=tmp / "shots", stop_wait=5)
        self.daemon.start()
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def ok(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        req = queue.wait_for(self.db, queue.submit(self.db, self.sock, command, args, **kw), 120)
        assert req.status == "done", f"{command}: {req.status} {req.error}"
        return req.result or {}

    def machine(self, machine_id: int) -> Machine | None:
        with self.db.sessionmaker() as s:
            return s.get(Machine, machine_id)

    def base(self, **policy: Any) -> int:
        name = "clsr" + uuid.uuid4().hex[:6]
        mid = self.ok("create", {"name": name, "disk_gb": 1, "memory_mb": 128})["machine_id"]
        self.ok("prepare_base", machine_id=mid)
        with self.db.session() as s:
            s.execute(update(Machine).where(Machine.id == mid).values(**policy))
        queue.notify(self.sock)
        return mid

    def user(self) -> int:
        with self.db.session() as s:
            u = User(name="u" + uuid.uuid4().hex[:6])
            s.add(u)
            s.flush()
            return u.id

    def close(self) -> None:
        self.daemon.stop()
        self.thread.join(30)
        self.daemon.close()
        self.db.dispose()


@pytest.fixture
def back(kvm_host: Host, tmp_path: Path) -> Iterator[Back]:
    b = Back(tmp_path)
    yield b
    b.close()
    conn = kvm_host.conn()
    for dom in conn.listAllDomains(0):
        if dom.name().startswith("clsr"):
            kvm_host.guest(dom.name()).remove(kvm_host.storage)
    for vol in kvm_host.storage.pool().listAllVolumes(0):
        if vol.name().startswith("clsr"):
            vol.delete(0)


def _vnc_session(port: int, password: str, hold: float) -> subprocess.Popen[str]:
    """A real VNC client (vncdotool, in a child) that logs in, holds ``hold`` s, leaves."""
    code = textwrap.dedent(f"""
        import time
        from vncdotool import api
        client = api.connect("127.0.0.1::{port}", password={password!r}, timeout=10)
        try:
            client.refreshScreen()
            time.sleep({hold})
        finally:
            client.disconnect()
            api.shutdown()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _click(b: Back, base: int, user: int) -> tuple[int, dict[str, Any]]:
    res = b.ok("clone", {"user_id": user, "start": True, "client_ip": "127.0.0.1"},
               machine_id=base)
    return res["machine_id"], res["display"]


def test_vnc_disconnect_grace_and_reconnect(back: Back, kvm_host: Host) -> None:
    base = back.base(volatile=True, shutdown_disconnected=True, shutdown_grace=10)
    mid, display = _click(back, base, back.user())
    clone = back.machine(mid)
    assert clone is not None and clone.idle_until is not None  # nobody connected yet
    port, password = display["vnc"]["port"], display["password"]

    client = _vnc_session(port, password, hold=3)
    wait_until(lambda: back.machine(mid).clients >= 1, 20, "no graphics connect event")
    assert back.machine(mid).idle_until is None
    client.wait(30)
    assert client.returncode == 0, client.stdout.read() if client.stdout else ""
    wait_until(lambda: back.machine(mid).clients == 0, 10, "no graphics disconnect event")
    assert back.machine(mid).idle_until is not None
    left = time.monotonic()
    # back within the grace: it keeps running past the first grace's end
    client = _vnc_session(port, password, hold=12)
    wait_until(lambda: back.machine(mid).clients >= 1, 9, "no reconnect event")
    time.sleep(max(0.0, left + 11 - time.monotonic()))
    assert back.machine(mid).state == "running"
    client.wait(30)
    left = time.monotonic()
    wait_until(lambda: back.machine(mid) is None, 40, "volatile clone not removed")
    assert time.monotonic() - left >= 8  # after the grace, not before
    name = clone.name
    assert name not in [d.name() for d in kvm_host.conn().listAllDomains(0)]
    pool = kvm_host.storage.pool()
    pool.refresh(0)
    assert not [v for v in pool.listVolumes() if v.startswith(name)]
    with back.db.sessionmaker() as s:
        assert s.scalars(select(FirewallRule).where(FirewallRule.machine_id == mid)).all() == []


def test_pool_refills_and_run_timeout(back: Back) -> None:
    base = back.base(pool_size=2, pool_started=2, run_timeout=3)

    def running_pool() -> int:
        with back.db.sessionmaker() as s:
            return len(s.scalars(select(Machine).where(
                Machine.base_id == base, Machine.is_pool.is_(True),
                Machine.state == "running")).all())

    wait_until(lambda: running_pool() == 2, 60, "pool not filled")
    t0 = time.monotonic()
    mid, display = _click(back, base, back.user())
    click = time.monotonic() - t0
    m = back.machine(mid)
    assert "-pool-" in m.name and m.owner_id is not None and display["vnc"]["port"]
    wait_until(lambda: running_pool() == 2, 60, "pool not refilled")
    # run_timeout (3 s from the hand-out) stops the user's clone: ACPI, then forced
    wait_until(lambda: back.machine(mid).state == "shutdown", 30, "run_timeout did nothing")
    with back.db.sessionmaker() as s:
        why = s.scalar(select(Request.args).where(Request.machine_id == mid,
                                                  Request.command == "shutdown"))
    assert why == {"reason": "run_timeout"}
    print(f"pooled click on KVM: {click * 1000:.0f} ms")
