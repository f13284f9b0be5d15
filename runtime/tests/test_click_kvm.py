"""The click's libvirt and database work on a REAL libvirtd + KVM (issue 14, P1).

A cold-clone click defines the clone with its one-time display password, so it makes no
live device update; re-opening the display of a running machine takes one update per
graphics, because libvirt takes one device per updateDeviceFlags call (checked here).
Calls are counted by a pass-through wrapper: the real libvirt call still runs.
"""
from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from kvm import POOL, URI, Cleanup  # kvm_host, kvm_cleanup: conftest.py
from sqlalchemy import event
from test_virt_kvm import IPXE, _vnc

from ravada import config as rconfig
from ravada.back import handlers
from ravada.back.context import Context, Job, make_firewall
from ravada.db import Database, Machine, User
from ravada.db.migrate import upgrade
from ravada.virt import Host, render_domain
from ravada.virt.guest import PNG_SIGNATURE

pytestmark = pytest.mark.kvm


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every virDomain.updateDeviceFlags call (the XML sent), passed through to libvirt."""
    calls: list[str] = []
    real = libvirt.virDomain.updateDeviceFlags

    def counted(self: libvirt.virDomain, xml: str, flags: int = 0) -> int:
        calls.append(xml)
        return real(self, xml, flags)

    monkeypatch.setattr(libvirt.virDomain, "updateDeviceFlags", counted)
    return calls


@pytest.fixture
def ctx(tmp_path: Path, kvm_host: Host) -> Iterator[Context]:
    cfg = rconfig.from_dict({
        "database": {"url": f"sqlite:///{tmp_path / 'ravada.db'}"},
        "libvirt": {"uri": URI, "storage_pool": POOL},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"), "iso_dir": str(tmp_path)},
    })
    db = Database(cfg.database.url)
    upgrade(db.engine)
    yield Context(cfg, db, kvm_host, make_firewall(cfg), tmp_path)
    db.dispose()


def _base(ctx: Context, cleanup: Cleanup) -> tuple[int, int]:
    """A base row whose domain boots iPXE from a read-only base image, and a user."""
    name = cleanup.guest("kvmc-" + uuid.uuid4().hex[:8])
    st = ctx.host.storage
    image = cleanup.path(st.make_base_image(cleanup.path(st.create_disk(name, 1)), name))
    guest = ctx.host.define(render_domain(name, 128, 1, [image], IPXE, "127.0.0.1"))
    with ctx.db.session() as s:
        base = Machine(name=name, is_base=True, is_public=True, state="shutdown",
                       memory_mb=128, vcpus=1, disk_gb=1, domain_uuid=guest.uuid)
        user = User(name="alice" + uuid.uuid4().hex[:4], password_hash="x")
        s.add_all([base, user])
        s.flush()
        return base.id, user.id


def test_libvirt_takes_one_graphics_device_per_update(kvm_host: Host,
                                                      kvm_cleanup: Cleanup) -> None:
    """Why a re-open needs two updates: both graphics in one call are refused."""
    name = kvm_cleanup.guest("kvmc-" + uuid.uuid4().hex[:8])
    disk = kvm_cleanup.path(kvm_host.storage.create_disk(name, 1))
    g = kvm_host.define(render_domain(name, 128, 1, [disk], IPXE, "127.0.0.1"))
    g.start()
    dom = kvm_host.conn().lookupByName(name)
    live = ET.fromstring(dom.XMLDesc(0))
    both = ET.Element("devices")
    for gfx in live.iterfind("devices/graphics"):
        gfx.set("passwd", "Abcd1234")
        both.append(gfx)
    assert len(both) == 2
    with pytest.raises(libvirt.libvirtError):
        dom.updateDeviceFlags(ET.tostring(both, encoding="unicode"),
                              libvirt.VIR_DOMAIN_AFFECT_LIVE)
    for gfx in both:  # one at a time is what libvirt accepts
        dom.updateDeviceFlags(ET.tostring(gfx, encoding="unicode"),
                              libvirt.VIR_DOMAIN_AFFECT_LIVE)


def test_cold_clone_click_makes_no_device_update(ctx: Context, kvm_cleanup: Cleanup,
                                                 updates: list[str], tmp_path: Path) -> None:
    base_id, uid = _base(ctx, kvm_cleanup)
    commits: list[int] = []
    me = threading.get_ident()
    event.listen(ctx.db.engine, "commit",
                 lambda *_: commits.append(1) if threading.get_ident() == me else None)
    job = Job(id=1, command="clone", args={"user_id": uid, "start": True,
                                           "client_ip": "127.0.0.1"},
              machine_id=base_id, user_id=uid)
    result: dict[str, Any] = handlers.clone(ctx, job)
    info = result["display"]
    kvm_cleanup.guest(info["machine"])  # its overlay goes with it
    # the password came with the domain: no live device update on the click
    assert updates == []
    # writes: the row (with the request's progress); then its domain, the viewer's
    # firewall rows, the state and the display in one transaction
    assert len(commits) == 2, commits
    with ctx.db.sessionmaker() as s:
        row = s.get(Machine, result["machine_id"])
        assert row is not None and row.state == "running"
        assert row.domain_uuid == ctx.host.guest(info["machine"]).uuid
    dom = ctx.host.conn().lookupByName(info["machine"])
    secure = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
    for gfx in secure.iterfind("devices/graphics"):
        expected = info["password"] if gfx.get("type") == "spice" else info["password"][:8]
        assert gfx.get("passwd") == expected and gfx.get("passwdValidTo")
    vnc = info["vnc"]["port"]
    good = _vnc(vnc, info["password"][:8], tmp_path / "good.png")
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "good.png").read_bytes().startswith(PNG_SIGNATURE)

    # re-opening the running machine's display: a new password, one update per graphics
    again = handlers.open_display(ctx, Job(id=2, command="open_display",
                                           args={"client_ip": "127.0.0.1"},
                                           machine_id=result["machine_id"], user_id=uid))
    assert len(updates) == 2 and again["password"] != info["password"]
    assert again["vnc"]["port"] == vnc
    old = _vnc(vnc, info["password"][:8], tmp_path / "old.png")
    assert old.returncode != 0 and not (tmp_path / "old.png").exists()
    expires = datetime.fromisoformat(again["expires"].replace("Z", "+00:00"))
    assert datetime.now(UTC) < expires <= datetime.now(UTC) + timedelta(
        seconds=ctx.config.display.password_lifetime + 5)
