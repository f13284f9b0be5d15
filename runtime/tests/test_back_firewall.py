"""rvd_back with its real firewall in a network namespace (libvirt's test driver, SQLite).

The daemon opens a machine's display for each viewer (up to the cap, IPv4 and IPv6
alike), keeps the plain SPICE and the VNC ports closed when they are not for viewers,
closes everything when the machine stops and makes the chain match the database when
it starts again.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from netns import NetNS, netns_fixture  # noqa: F401 (fixture)
from sqlalchemy import select
from test_back import Running, make_config, stop_daemon

from ravada import config as rconfig
from ravada.back import access
from ravada.back.daemon import Daemon
from ravada.db import Database, FirewallRule, User
from ravada.firewall import Firewall, Rule

pytestmark = pytest.mark.netns
A4, B4, C4, A6 = "10.7.0.2", "10.7.0.3", "10.7.0.4", "2001:db8::2"


def daemon(tmp_path: Path, db: Database, ns: NetNS, display: dict[str, Any] | None = None,
           **fw: Any) -> Running:
    base = make_config(tmp_path, str(db.engine.url))
    cfg = rconfig.from_dict({
        "database": {"url": str(db.engine.url)},
        "libvirt": {"uri": "test:///default", "storage_pool": base.libvirt.storage_pool},
        "queue": {"socket": base.queue.socket, "fallback_poll": 0.5},
        "display": {"listen": "127.0.0.1", **(display or {})},
        "firewall": {"enabled": True, **fw},
        "front": {"secret_key_file": base.front.secret_key_file,
                  "iso_dir": base.front.iso_dir},
    })
    d = Daemon(cfg, db=db, firewall=Firewall(command_prefix=ns.prefix),
               screenshot_dir=tmp_path / "shots", stop_wait=5)
    d.start()
    t = threading.Thread(target=d.run, name="rvd_back", daemon=True)
    t.start()
    return Running(d, t)


@pytest.fixture
def users(db: Database) -> tuple[int, int]:
    with db.session() as s:
        a, b = User(name="a" + uuid.uuid4().hex[:6]), User(name="b" + uuid.uuid4().hex[:6])
        s.add_all([a, b])
        s.flush()
        return a.id, b.id


def chain(ns: NetNS) -> set[Rule]:
    return set(Firewall(command_prefix=ns.prefix).rules())


def rows(db: Database, machine_id: int) -> set[tuple[str, int, int | None]]:
    with db.session() as s:
        return {(r.client_ip, r.port, r.user_id) for r in s.scalars(
            select(FirewallRule).where(FirewallRule.machine_id == machine_id))}


@pytest.fixture
def machine(tmp_path: Path, db: Database, netns: NetNS) -> Iterator[tuple[Running, int, str]]:
    back = daemon(tmp_path, db, netns, max_viewers=2)
    name = "fw" + uuid.uuid4().hex[:8]
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    try:
        yield back, mid, name
    finally:
        back.ok("remove", machine_id=mid)
        stop_daemon(back)


def test_open_on_display_cap_and_close_on_shutdown(machine: tuple[Running, int, str],
                                                   netns: NetNS, db: Database,
                                                   users: tuple[int, int]) -> None:
    back, mid, name = machine
    alice, admin = users
    info = back.ok("open_display", {"client_ip": A4}, machine_id=mid, user_id=alice)
    spice, vnc = info["spice"]["port"], info["vnc"]["port"]
    assert chain(netns) == {Rule(name, spice, A4)}  # VNC is for rvd_console, not viewers
    back.ok("open_display", {"client_ip": A6}, machine_id=mid, user_id=alice)
    assert chain(netns) == {Rule(name, spice, A4), Rule(name, spice, A6)}
    # the browser console: a fresh password, no port for the viewer
    back.ok("open_display", {"client_ip": C4, "console": True}, machine_id=mid, user_id=admin)
    assert chain(netns) == {Rule(name, spice, A4), Rule(name, spice, A6)}
    back.ok("open_display", {"client_ip": B4}, machine_id=mid, user_id=admin)  # cap 2: A4 out
    assert chain(netns) == {Rule(name, spice, A6), Rule(name, spice, B4)}
    assert rows(db, mid) == {(A6, spice, alice), (B4, spice, admin)}
    back.ok("open_display", {"client_ip": A6}, machine_id=mid, user_id=alice)  # newest again
    back.ok("open_display", {"client_ip": A4}, machine_id=mid, user_id=alice)  # B4 is oldest
    assert chain(netns) == {Rule(name, spice, A6), Rule(name, spice, A4)}
    assert vnc not in {r.port for r in chain(netns)}
    back.ok("open_display", {"client_ip": B4}, machine_id=mid, user_id=admin)
    # alice is disabled: her openings go, the admin's stays
    assert access.close_user(back.daemon.ctx, alice) == 1
    assert chain(netns) == {Rule(name, spice, B4)} and rows(db, mid) == {(B4, spice, admin)}

    back.ok("force_shutdown", machine_id=mid)
    assert chain(netns) == set() and rows(db, mid) == set()


def test_reconcile_at_start(tmp_path: Path, db: Database, netns: NetNS,
                            users: tuple[int, int]) -> None:
    alice, _ = users
    keep = libvirt.open("test:///default")  # the test driver forgets all with its last client
    back = daemon(tmp_path, db, netns)
    name = "fw" + uuid.uuid4().hex[:8]
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    try:
        back.ok("start", machine_id=mid)
        spice = back.ok("open_display", {"client_ip": A4}, machine_id=mid,
                        user_id=alice)["spice"]["port"]
        stop_daemon(back)
        # While rvd_back is down: the chain is flushed, a stale rule appears, the hook goes.
        netns.run("iptables", "-F", "RAVADA")
        netns.run("iptables", "-A", "RAVADA", "-s", B4, "-p", "tcp", "--dport", "5999",
                  "-m", "comment", "--comment", "ravada:gone", "-j", "ACCEPT")
        netns.run("iptables", "-D", "INPUT", "-j", "RAVADA")
        back = daemon(tmp_path, db, netns)
        assert chain(netns) == {Rule(name, spice, A4)}
        assert netns.iptables_s("INPUT")[1:] == ["-A INPUT -j RAVADA"]
    finally:
        back.ok("remove", machine_id=mid)
        stop_daemon(back)
        keep.close()
    assert chain(netns) == set()


@pytest.mark.parametrize(("display", "wanted"), [
    ({"spice_tls": True}, ("spice_tls",)),
    ({"spice_tls": True, "direct_vnc": True}, ("spice_tls", "vnc")),
    ({"direct_vnc": True}, ("spice", "vnc")),
])
def test_ports_for_viewers(tmp_path: Path, db: Database, netns: NetNS, users: tuple[int, int],
                           display: dict[str, Any], wanted: tuple[str, ...]) -> None:
    back = daemon(tmp_path, db, netns, display)
    name = "fw" + uuid.uuid4().hex[:8]
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    try:
        back.ok("start", machine_id=mid)
        info = back.ok("open_display", {"client_ip": A4}, machine_id=mid, user_id=users[0])
        ports = {"spice": info["spice"]["port"], "spice_tls": info["spice"]["tls_port"],
                 "vnc": info["vnc"]["port"]}
        assert chain(netns) == {Rule(name, ports[k], A4) for k in wanted}
    finally:
        back.ok("remove", machine_id=mid)
        stop_daemon(back)
