# ruff: noqa: F811  (fixtures imported from test_back)
"""The ``hardware`` request on libvirt's test:///default driver: each change and its refusals.

What is checked is what libvirt holds afterwards (the persistent definition, the running
domain), not only the row.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from test_back import Running, alice, back, cfg, name  # noqa: F401

from ravada import config as rconfig


def _xml(back: Running, name: str, inactive: bool = True) -> ET.Element:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return ET.fromstring(back.host.conn().lookupByName(name).XMLDesc(flags))


def _make(back: Running, name: str, **kw: object) -> int:
    args = {"name": name, "disk_gb": 2, "memory_mb": 1024, "vcpus": 2, **kw}
    return back.ok("create", args)["machine_id"]


def test_memory_and_vcpus_of_a_stopped_machine(back: Running, name: str) -> None:
    mid = _make(back, name)
    res = back.ok("hardware", {"memory_mb": 2048, "vcpus": 3}, machine_id=mid)
    assert sorted(res["applied"]) == ["memory_mb", "vcpus"] and res["next_start"] == []
    root = _xml(back, name)
    assert root.findtext("memory") == str(2048 * 1024)
    assert root.findtext("vcpu") == "3"
    m = back.machine(mid)
    assert (m.memory_mb, m.vcpus) == (2048, 3) and "next_start" not in (m.hardware or {})
    back.ok("remove", machine_id=mid)


def test_memory_of_a_running_machine_waits_for_next_start(back: Running, name: str) -> None:
    mid = _make(back, name)
    back.ok("start", machine_id=mid)
    res = back.ok("hardware", {"memory_mb": 4096}, machine_id=mid)
    assert res == {"applied": [], "next_start": ["memory_mb"]}
    dom = back.host.conn().lookupByName(name)
    assert dom.info()[1] == 1024 * 1024  # the running domain keeps its maximum
    assert _xml(back, name).findtext("memory") == str(4096 * 1024)  # the next start's
    m = back.machine(mid)
    assert m.memory_mb == 4096
    assert m.hardware["next_start"] == {"memory_mb": {"from": 1024, "to": 4096}}
    assert m.last_started_at is not None
    # down by balloon is live, and back to what it runs with leaves nothing waiting
    res = back.ok("hardware", {"memory_mb": 512}, machine_id=mid)
    assert res == {"applied": ["memory_mb"], "next_start": []}
    assert dom.info()[2] == 512 * 1024
    assert "next_start" not in back.machine(mid).hardware
    back.ok("hardware", {"memory_mb": 3072}, machine_id=mid)
    assert back.machine(mid).hardware["next_start"]["memory_mb"]["to"] == 3072
    # the next start applies it: nothing waits any more
    back.ok("shutdown", {"timeout": 5}, machine_id=mid)
    back.ok("start", machine_id=mid)
    assert dom.info()[1] == 3072 * 1024
    assert "next_start" not in back.machine(mid).hardware
    back.ok("remove", machine_id=mid)


def test_vcpus_live_down_to_the_maximum(back: Running, name: str) -> None:
    mid = _make(back, name)
    back.ok("start", machine_id=mid)
    assert back.ok("hardware", {"vcpus": 1}, machine_id=mid)["applied"] == ["vcpus"]
    assert back.ok("hardware", {"vcpus": 4}, machine_id=mid)["next_start"] == ["vcpus"]
    assert _xml(back, name).findtext("vcpu") == "4"
    back.ok("remove", machine_id=mid)


def test_displays_sound_and_usb_redirection(back: Running, name: str) -> None:
    mid = _make(back, name)
    res = back.ok("hardware", {"spice": False, "sound": True}, machine_id=mid)
    assert sorted(res["applied"]) == ["sound", "spice"]
    root = _xml(back, name)
    assert [g.get("type") for g in root.iterfind("devices/graphics")] == ["vnc"]
    assert root.find("devices/sound").get("model") == "ich9"
    assert root.find("devices/redirdev") is None  # USB redirection goes through SPICE
    back.ok("hardware", {"spice": True, "usb_redirect": False}, machine_id=mid)
    root = _xml(back, name)
    assert [g.get("type") for g in root.iterfind("devices/graphics")] == ["spice", "vnc"]
    assert root.find("devices/redirdev") is None
    back.ok("hardware", {"usb_redirect": True}, machine_id=mid)
    assert len(_xml(back, name).findall("devices/redirdev")) == 2
    hw = back.machine(mid).hardware
    assert (hw["spice"], hw["vnc"], hw["sound"], hw["usb_redirect"]) == (True, True, True, True)
    # a running machine gets display changes at its next start
    back.ok("start", machine_id=mid)
    assert back.ok("hardware", {"vnc": False}, machine_id=mid)["next_start"] == ["vnc"]
    live = [g.get("type") for g in _xml(back, name, inactive=False).iterfind("devices/graphics")]
    assert live == ["spice", "vnc"]
    back.ok("remove", machine_id=mid)


def test_iso_change_and_eject(back: Running, name: str, cfg: rconfig.Config) -> None:
    for iso in ("a.iso", "b.iso"):
        (Path(cfg.front.iso_dir) / iso).write_bytes(b"\0" * 1024)
    mid = _make(back, name, iso="a.iso")
    back.ok("hardware", {"iso": "b.iso"}, machine_id=mid)
    cdrom = _xml(back, name).find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == str(Path(cfg.front.iso_dir) / "b.iso")
    assert back.machine(mid).iso == "b.iso"
    back.ok("hardware", {"iso": None}, machine_id=mid)
    cdrom = _xml(back, name).find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("source") is None  # the drive stays, empty
    assert back.machine(mid).iso is None
    assert "not found" in back.fails("hardware", {"iso": "nope.iso"}, machine_id=mid)
    assert "bad iso" in back.fails("hardware", {"iso": "../x.iso"}, machine_id=mid)
    back.ok("remove", machine_id=mid)


def test_add_disk_and_the_grow_refusals(back: Running, name: str) -> None:
    mid = _make(back, name)
    res = back.ok("hardware", {"add_disk_gb": 3}, machine_id=mid)
    assert res["applied"] == ["disk vdb"]
    disks = _xml(back, name).findall("devices/disk[@device='disk']")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert f"{name}.vdb.qcow2" in back.volumes()
    assert back.machine(mid).hardware["disks"] == [{"dev": "vda", "gb": 2},
                                                   {"dev": "vdb", "gb": 3}]
    assert "a disk only grows" in back.fails(
        "hardware", {"grow_disk": {"dev": "vdb", "gb": 2}}, machine_id=mid)
    assert "has no disk vdc" in back.fails(
        "hardware", {"grow_disk": {"dev": "vdc", "gb": 9}}, machine_id=mid)
    # the test driver cannot resize volumes: a clear failure, the row unchanged
    error = back.fails("hardware", {"grow_disk": {"dev": "vda", "gb": 5}}, machine_id=mid)
    assert "grow volume" in error and "not supported" in error
    assert back.machine(mid).hardware["disks"][0] == {"dev": "vda", "gb": 2}
    back.ok("remove", machine_id=mid)
    assert f"{name}.vdb.qcow2" not in back.volumes()  # removed with its machine


@pytest.mark.parametrize("args, message", [
    ({}, "nothing to change"),
    ({"memory_mb": 32}, "memory_mb: an integer from 64"),
    ({"vcpus": 0}, "vcpus: an integer from 1 to 64"),
    ({"sound": "yes"}, "sound: true or false"),
    ({"spice": False, "vnc": False}, "keep at least one of SPICE and VNC"),
    ({"add_disk_gb": 0}, "add_disk_gb: an integer from 1"),
    ({"grow_disk": {"dev": "sda", "gb": 9}}, "grow_disk:"),
    ({"cpu_model": "host"}, "unknown hardware setting(s): cpu_model"),
])
def test_bad_changes_are_refused(back: Running, name: str, args: dict, message: str) -> None:
    mid = _make(back, name)
    before = ET.tostring(_xml(back, name))
    assert message in back.fails("hardware", args, machine_id=mid)
    assert ET.tostring(_xml(back, name)) == before
    back.ok("remove", machine_id=mid)


def test_a_base_with_clones_keeps_its_hardware(back: Running, name: str,
                                               alice: int) -> None:
    mid = _make(back, name)
    back.ok("prepare_base", machine_id=mid)
    clone = back.ok("clone", {"user_id": alice}, machine_id=mid)["machine_id"]
    before = ET.tostring(_xml(back, name))
    error = back.fails("hardware", {"memory_mb": 4096}, machine_id=mid)
    assert f"{name} is a base with 1 clone(s)" in error and "remove the clones" in error
    assert ET.tostring(_xml(back, name)) == before and back.machine(mid).memory_mb == 1024
    # a clone gets the base's switches; without clones the base may change
    back.ok("remove", machine_id=clone)
    assert "read-only image" in back.fails("hardware", {"add_disk_gb": 1}, machine_id=mid)
    back.ok("hardware", {"sound": True, "memory_mb": 2048}, machine_id=mid)
    clone = back.ok("clone", {"user_id": alice}, machine_id=mid)["machine_id"]
    assert _xml(back, back.machine(clone).name).find("devices/sound") is not None
    assert back.machine(clone).memory_mb == 2048 and back.machine(clone).hardware["sound"]
    back.ok("remove", machine_id=clone)
    back.ok("remove", machine_id=mid)
