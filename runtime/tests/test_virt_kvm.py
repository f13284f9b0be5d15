"""The virt layer against a real libvirtd + QEMU/KVM (``-m kvm``; skipped where none runs)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import libvirt
import pytest
from kvm import URI, Cleanup, restart_libvirtd
from test_virt import Events as BaseEvents

from ravada.virt import Guest, Host, render_domain
from ravada.virt.guest import PNG_SIGNATURE

pytestmark = pytest.mark.kvm
IPXE = "/usr/lib/ipxe/ipxe.iso"
SAVE_DIR = Path("/var/lib/libvirt/qemu/save")


def _name() -> str:
    return "kvmt-" + uuid.uuid4().hex[:8]


def _machine(host: Host, cleanup: Cleanup, *, iso: str | None = None, disk: str | None = None,
             size_gb: int = 1) -> Guest:
    name = cleanup.guest(_name())
    disk = disk or cleanup.path(host.storage.create_disk(name, size_gb))
    return host.define(render_domain(name, 128, 1, [disk], iso, "127.0.0.1", host.domain_type))


def _img_info(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class Events(BaseEvents):
    """on_state collector with a timeout fit for real KVM."""

    def wait_for(self, name: str, state: str, timeout: float = 30) -> bool:
        return super().wait_for(name, state, timeout)


def test_blank_disk_machine_starts_on_kvm(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    assert kvm_host.domain_type == "kvm"
    g = _machine(kvm_host, kvm_cleanup)
    g.start()
    assert g.state() == "running"
    live = ET.fromstring(kvm_host.conn().lookupByName(g.name).XMLDesc(0))
    assert live.get("type") == "kvm" and live.get("id")
    display = g.display()
    assert display["listen"] == "127.0.0.1"
    assert display["spice"] >= 5900 and display["vnc"] >= 5900
    assert display["spice"] != display["vnc"] and display["spice_tls"] is None
    g.force_shutdown()
    assert g.state() == "shutdown"
    assert g.display()["vnc"] is None


def test_ipxe_iso_machine_starts(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    g = _machine(kvm_host, kvm_cleanup, iso=IPXE)
    g.start()
    assert g.state() == "running"
    live = ET.fromstring(kvm_host.conn().lookupByName(g.name).XMLDesc(0))
    assert live.find("devices/disk[@device='cdrom']/source").get("file") == IPXE
    png = g.screenshot()  # QEMU gives PPM: converted
    assert png.startswith(PNG_SIGNATURE)


def test_clone_overlay_of_readonly_base_starts(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    st = kvm_host.storage
    base_machine = _machine(kvm_host, kvm_cleanup, size_gb=2)
    disk = base_machine.disk_paths()[0]
    base = kvm_cleanup.path(st.make_base_image(disk, base_machine.name))
    assert not os.path.exists(disk) and st.exists(base) and not st.exists(disk)
    assert os.stat(base).st_mode & 0o777 == 0o444
    clone = _machine(kvm_host, kvm_cleanup,
                     disk=kvm_cleanup.path(st.create_overlay(base_machine.name + "-1", base)))
    clone.start()
    assert clone.state() == "running"
    info = _img_info(clone.disk_paths()[0])
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == base
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 2 << 30
    clone.remove(kvm_host.storage)
    assert os.path.exists(base)  # the base stays
    assert os.stat(base).st_mode & 0o777 == 0o444


def test_clone_time_does_not_grow_with_disk_size(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    st = kvm_host.storage
    times = {}
    for size in (1, 20):
        name = _name()
        base = kvm_cleanup.path(st.make_base_image(kvm_cleanup.path(st.create_disk(name, size)),
                                                   name))
        runs = []
        for i in range(5):
            t0 = time.perf_counter()
            kvm_cleanup.path(st.create_overlay(f"{name}-{i}", base))
            runs.append(time.perf_counter() - t0)
        times[size] = statistics.median(runs)
    print(f"overlay clone median: 1 GiB {times[1] * 1000:.1f} ms, 20 GiB {times[20] * 1000:.1f} ms")
    assert times[1] < 0.5 and times[20] < 0.5
    assert times[20] < max(3 * times[1], 0.1)


def test_hibernate_and_resume(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    events = Events()
    with Host(URI, kvm_host.storage.pool_name, on_state=events) as host:
        g = host.guest(_machine(kvm_host, kvm_cleanup, iso=IPXE).name)
        g.start()
        assert events.wait_for(g.name, "running")
        g.hibernate()
        assert g.has_managed_save() and g.state() == "hibernated"
        assert (SAVE_DIR / f"{g.name}.save").exists()
        assert events.wait_for(g.name, "hibernated")
        g.resume()
        assert g.state() == "running" and not g.has_managed_save()
        assert not (SAVE_DIR / f"{g.name}.save").exists()
        g.hibernate()
        g.start()
        assert g.state() == "running"
        g.force_shutdown()
        assert events.wait_for(g.name, "shutdown")


def _vnc(port: int, password: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Capture the screen with vncdotool in a child (its reactor runs once per process)."""
    code = textwrap.dedent(f"""
        from vncdotool import api
        client = api.connect("127.0.0.1::{port}", password={password!r}, timeout=5)
        try:
            client.captureScreen({str(out)!r})
        finally:
            client.disconnect()
            api.shutdown()
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)


def test_display_password_over_vnc(kvm_host: Host, kvm_cleanup: Cleanup, tmp_path: Path) -> None:
    g = _machine(kvm_host, kvm_cleanup, iso=IPXE)
    g.start()
    port = g.display()["vnc"]
    g.set_display_password("s3cret12", datetime.now(UTC) + timedelta(minutes=5))
    secure = ET.fromstring(kvm_host.conn().lookupByName(g.name)
                           .XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
    for gfx in secure.iterfind("devices/graphics"):
        assert gfx.get("passwd") == "s3cret12" and gfx.get("passwdValidTo")
    assert g.display()["vnc"] == port  # same ports after the update

    good = _vnc(port, "s3cret12", tmp_path / "good.png")
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "good.png").read_bytes().startswith(PNG_SIGNATURE)

    bad = _vnc(port, "wrong123", tmp_path / "bad.png")
    assert bad.returncode != 0 and not (tmp_path / "bad.png").exists()

    expiry = datetime.now(UTC) + timedelta(seconds=2)
    g.set_display_password("short123", expiry)
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.5)
    late = _vnc(port, "short123", tmp_path / "late.png")
    assert late.returncode != 0 and not (tmp_path / "late.png").exists()


def test_remove_leaves_no_file(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    g = _machine(kvm_host, kvm_cleanup, iso=IPXE)
    disk = g.disk_paths()[0]
    g.start()
    g.hibernate()
    assert (SAVE_DIR / f"{g.name}.save").exists() and os.path.exists(disk)
    g.remove(kvm_host.storage)
    assert not kvm_host.has_guest(g.name)
    assert not os.path.exists(disk)
    assert not (SAVE_DIR / f"{g.name}.save").exists()
    assert not list(Path("/etc/libvirt/qemu").glob(f"{g.name}.xml"))
    g.remove(kvm_host.storage)  # idempotent


def test_shutdown_times_out_without_acpi(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    """iPXE ignores ACPI: shutdown() waits its timeout and says False, it does not hang."""
    g = _machine(kvm_host, kvm_cleanup, iso=IPXE)
    g.start()
    t0 = time.monotonic()
    assert g.shutdown(timeout=1.0) is False
    assert 0.9 < time.monotonic() - t0 < 3
    assert g.state() == "running"


def test_reconnects_after_libvirtd_restart(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    events = Events()
    with Host(URI, kvm_host.storage.pool_name, on_state=events) as host:
        g = host.guest(_machine(kvm_host, kvm_cleanup, iso=IPXE).name)
        g.start()
        assert events.wait_for(g.name, "running")
        events.seen.clear()
        restart_libvirtd(kvm_host)
        assert g.state() == "running"  # the old Guest works on the new connection
        g.force_shutdown()  # right after a restart libvirtd may miss the STOPPED event
        assert events.wait_for(g.name, "shutdown")
        assert host.list_guests()[g.name] == "shutdown"
        g.start()
        events.seen.clear()
        other = libvirt.open(URI)  # a change made elsewhere reaches us only as an event
        try:
            other.lookupByName(g.name).destroy()
        finally:
            other.close()
        assert events.wait_for(g.name, "shutdown")  # events are registered again


# -- measurement ----------------------------------------------------------------------------
def test_bench_clone_define_start(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    """Median of 10: overlay + define + start through the virt API vs raw libvirt-python
    (qemu-img create + defineXML + create), interleaved, each machine stopped untimed."""
    st = kvm_host.storage
    name = _name()
    base = kvm_cleanup.path(st.make_base_image(kvm_cleanup.path(st.create_disk(name, 10)), name))
    pool_dir = os.path.dirname(base)
    conn = libvirt.open(URI)

    def ours(clone: str) -> None:
        disk = kvm_cleanup.path(st.create_overlay(clone, base))
        kvm_host.define(render_domain(clone, 128, 1, [disk], None, "127.0.0.1")).start()

    def raw(clone: str) -> None:
        disk = kvm_cleanup.path(f"{pool_dir}/{clone}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        disk], check=True)
        conn.defineXML(render_domain(clone, 128, 1, [disk], None, "127.0.0.1")).create()

    times: dict[str, list[float]] = {"ours": [], "raw": []}
    try:
        for i in range(11):  # the first pair warms up and is not counted
            for kind, fn in (("raw", raw), ("ours", ours)) if i % 2 else (("ours", ours),
                                                                         ("raw", raw)):
                clone = kvm_cleanup.guest(f"{name}-{kind[0]}{i}")
                t0 = time.perf_counter()
                fn(clone)
                if i:
                    times[kind].append(time.perf_counter() - t0)
                kvm_host.guest(clone).force_shutdown()
    finally:
        conn.close()
    t_ours, t_raw = statistics.median(times["ours"]), statistics.median(times["raw"])
    print(f"clone+define+start median of 10: virt API {t_ours * 1000:.0f} ms, "
          f"raw libvirt-python {t_raw * 1000:.0f} ms, ratio {t_ours / t_raw:.2f}")
    assert t_ours < 1.5 * t_raw + 0.2
