# ruff: noqa: F811  (pytest fixtures imported by name)
"""Issue #10 on test:///default: bases from a disk image, the guest agent's report in the DB
and on the display page, and the agent/ACPI shutdown call (the real guest: test_desktop_kvm).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from test_back import Running, back, cfg, name, wait_until  # noqa: F401
from test_front_support import World, world  # noqa: F401

from ravada.back import admin
from ravada.db import Machine
from ravada.virt import agent


def _image(back: Running, stem: str) -> str:
    """A qcow2 volume ``<stem>.image.qcow2`` in the test pool (the disk image to base on)."""
    vol = back.host.storage.pool().createXML(
        f"<volume><name>{stem}.image.qcow2</name><capacity unit='G'>1</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)
    return vol.path()


@pytest.fixture
def image(back: Running) -> Iterator[str]:
    stem = "img" + uuid.uuid4().hex[:8]
    path = _image(back, stem)
    yield f"{stem}.image.qcow2"
    back.host.storage.delete(path)


def test_create_from_an_image_is_an_overlay_and_keeps_the_image(back: Running, name: str,
                                                                image: str) -> None:
    mid = back.ok("create", {"name": name, "image": image, "memory_mb": 512})["machine_id"]
    disk = back.host.guest(name).disk_paths()[0]
    vol = back.host.conn().storageVolLookupByPath(disk)
    backing = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") or ""
    assert backing.endswith(image), vol.XMLDesc(0)
    back.ok("prepare_base", machine_id=mid)
    assert back.machine(mid).is_base
    back.ok("remove", machine_id=mid)
    assert image in back.volumes(), "removing the base deleted the image it was made from"


@pytest.mark.parametrize("bad, message", [
    ("../../etc/passwd.image.qcow2", "bad image"),
    ("disk.qcow2", "bad image"),
    (42, "bad image"),
    ("missing.image.qcow2", "no image 'missing.image.qcow2' in storage pool"),
])
def test_create_refuses_bad_images_and_leaves_nothing(back: Running, name: str, bad: Any,
                                                      message: str) -> None:
    before = back.volumes()
    assert message in back.fails("create", {"name": name, "image": bad})
    assert back.volumes() == before and name not in back.guests()
    with back.db.session() as s:
        assert s.query(Machine).count() == 0


def test_create_takes_an_image_alone(back: Running, name: str, image: str) -> None:
    assert "an image alone" in back.fails("create", {"name": name, "image": image,
                                                     "disk_gb": 1})


def test_add_base_makes_a_prepared_public_base_once(back: Running, name: str,
                                                    image: str) -> None:
    mid, made = admin.add_base(back.cfg, back.db, image, name, "Debian desktop", 512, 2,
                               True, timeout=20)
    assert made
    m = back.machine(mid)
    assert (m.is_base, m.is_public, m.description, m.memory_mb, m.vcpus) == \
        (True, True, "Debian desktop", 512, 2)
    again, made = admin.add_base(back.cfg, back.db, image, name, "Debian desktop", 512, 2,
                                 True, timeout=20)
    assert (again, made) == (mid, False)
    back.ok("remove", machine_id=mid)


def test_agent_connect_event_stores_the_report_and_stop_clears_it(back: Running,
                                                                   name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    # libvirt's agent lifecycle event, as the Host hands it on
    back.host.on_agent(name, True)
    info = wait_until(lambda: back.machine(mid).guest_info)
    # test:/// answers the addresses call (no interface here: none) and has no hostname call
    assert info == {"hostname": None, "addresses": []}
    back.ok("force_shutdown", machine_id=mid)
    assert back.machine(mid).guest_info is None
    back.ok("remove", machine_id=mid)


class _Dom:
    """A domain whose agent calls raise what libvirt raises without an agent."""

    def __init__(self, code: int) -> None:
        self.code = code

    def name(self) -> str:
        return "d"

    def guestInfo(self, *_a: Any) -> dict[str, Any]:  # noqa: N802 (libvirt's name)
        err = libvirt.libvirtError("QEMU guest agent is not connected")
        err.err = (self.code, 0, "QEMU guest agent is not connected", 0, "", None, None,
                   0, 0)
        raise err


@pytest.mark.parametrize("code", [libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                                  libvirt.VIR_ERR_OPERATION_INVALID,
                                  libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED])
def test_no_agent_is_none_not_an_error(code: int) -> None:
    assert agent.read_info(_Dom(code)) is None  # type: ignore[arg-type]


def test_addresses_shown_leave_out_loopback_and_link_local() -> None:
    ifaces = {"lo": {"addrs": [{"addr": "127.0.0.1", "prefix": 8}, {"addr": "::1", "prefix": 128}]},
              "enp1s0": {"addrs": [{"addr": "10.0.0.5", "prefix": 24},
                                   {"addr": "fe80::1", "prefix": 64},
                                   {"addr": "2001:db8::5", "prefix": 64}]}}
    assert agent._addresses(ifaces) == ["10.0.0.5/24", "2001:db8::5/64"]


def test_display_page_shows_the_agent_report_only_when_there_is_one(world: World) -> None:
    w = world
    alice = w.client("alice")
    page = alice.get(f"/machine/{w.alice_vm}").get_data(as_text=True)
    assert 'id="guest-info"' not in page
    with w.db.session() as s:
        s.get(Machine, w.alice_vm).guest_info = {"hostname": "ravada-desktop",
                                                 "addresses": ["10.0.0.5/24"]}
    page = alice.get(f"/machine/{w.alice_vm}").get_data(as_text=True)
    assert 'id="guest-info"' in page
    assert "ravada-desktop" in page and "10.0.0.5/24" in page
    api = alice.get(f"/api/v1/machines/{w.alice_vm}").json
    assert api["guest"] == {"hostname": "ravada-desktop", "addresses": ["10.0.0.5/24"]}
