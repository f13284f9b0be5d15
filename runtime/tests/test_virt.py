"""The virt layer on libvirt's test:///default driver (hermetic, no root)."""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import libvirt
import pytest

from ravada.virt import Guest, GuestNotFound, Host, VirtError, render_domain
from ravada.virt.guest import PNG_SIGNATURE

POOL = "default-pool"


class Events:
    """Collects on_state calls; ``wait_for`` blocks on a condition, no polling."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, name: str, state: str) -> None:
        with self._cond:
            self.seen.append((name, state))
            self._cond.notify_all()

    def wait_for(self, name: str, state: str, timeout: float = 5) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: (name, state) in self.seen, timeout)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def host(events: Events) -> Iterator[Host]:
    h = Host("test:///default", POOL, on_state=events)
    yield h
    h.close()


@pytest.fixture
def name() -> str:
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture
def guest(host: Host, name: str) -> Iterator[Guest]:
    disk = host.storage.create_disk(name, 1)
    g = host.define(render_domain(name, 256, 1, [disk], None, "127.0.0.1", host.domain_type))
    yield g
    g.remove(host.storage)


# -- xml ------------------------------------------------------------------------------------
def test_render_domain_devices() -> None:
    xml = render_domain("desk1", 2048, 2, ["/p/a.qcow2", "/p/b.qcow2"], "/iso/x.iso", "10.0.0.5")
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert root.findtext("memory") == str(2048 * 1024)
    assert root.findtext("vcpu") == "2"
    disks = root.findall("devices/disk[@device='disk']")
    assert [d.find("source").get("file") for d in disks] == ["/p/a.qcow2", "/p/b.qcow2"]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert all(d.find("target").get("bus") == "virtio" for d in disks)
    assert all(d.find("driver").get("type") == "qcow2" for d in disks)
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == "/iso/x.iso"
    assert cdrom.find("target").get("bus") == "sata"
    assert cdrom.find("boot").get("order") == "1"
    assert disks[0].find("boot").get("order") == "2"
    assert root.find("devices/video/model").get("type") == "qxl"
    for kind in ("spice", "vnc"):
        gfx = root.find(f"devices/graphics[@type='{kind}']")
        assert gfx.get("autoport") == "yes" and gfx.get("listen") == "10.0.0.5"
        assert gfx.find("listen").attrib == {"type": "address", "address": "10.0.0.5"}
        assert gfx.get("passwd")  # QEMU only takes later passwords when started with one
    channel = root.find("devices/channel[@type='spicevmc']/target")
    assert channel.get("name") == "com.redhat.spice.0"
    assert root.find("devices/controller[@type='usb']").get("model") == "qemu-xhci"
    assert len(root.findall("devices/redirdev[@type='spicevmc']")) == 2
    assert root.find("devices/input").attrib == {"type": "tablet", "bus": "usb"}


def test_render_domain_escapes_and_validates() -> None:
    xml = render_domain("x", 256, 1, ["/p/a'b&<c>.qcow2"], "/iso/\"q\".iso", "::1", "test")
    root = ET.fromstring(xml)  # well-formed despite quotes, & and <>
    assert root.find("devices/disk/source").get("file") == "/p/a'b&<c>.qcow2"
    assert root.find("devices/disk[@device='cdrom']/source").get("file") == '/iso/"q".iso'
    assert root.get("type") == "test"
    for bad in (dict(name="a b"), dict(name="<x>"), dict(memory_mb=0), dict(vcpus=0),
                dict(disks=["relative.qcow2"]), dict(listen="eth0"),
                dict(domain_type="xen"), dict(uuid="nope")):
        args = dict(name="ok", memory_mb=256, vcpus=1, disks=[], iso=None, listen="0.0.0.0")
        args.update(bad)
        with pytest.raises(ValueError):
            render_domain(**args)


def test_defines_on_test_driver_with_given_uuid(host: Host, name: str) -> None:
    uid = str(uuid.uuid4())
    g = host.define(render_domain(name, 256, 1, [], None, "0.0.0.0", host.domain_type, uid))
    try:
        assert (g.name, g.uuid) == (name, uid)
        assert host.has_guest(name) and host.guest(name).uuid == uid
        assert host.list_guests()[name] == "shutdown"
    finally:
        g.remove(host.storage)


# -- errors ---------------------------------------------------------------------------------
def test_guest_not_found(host: Host) -> None:
    with pytest.raises(GuestNotFound) as err:
        host.guest("no-such-machine")
    assert isinstance(err.value, VirtError) and isinstance(err.value, LookupError)
    assert "no-such-machine" in str(err.value)
    assert not host.has_guest("no-such-machine")


def test_libvirt_errors_become_virt_errors(host: Host, guest: Guest) -> None:
    with pytest.raises(VirtError, match=r"^define machine: .*Premature end of data") as err:
        host.define("<domain type='test'><name>broken")
    assert not isinstance(err.value, libvirt.libvirtError)
    assert "\n" not in str(err.value) and "^" not in str(err.value)
    guest.start()
    with pytest.raises(VirtError, match=f"^start {guest.name}: "):
        guest._run("start", lambda d: d.create())  # already running: libvirt refuses


def test_bad_pool(events: Events) -> None:
    with Host("test:///default", "no-such-pool") as h:
        with pytest.raises(VirtError, match="storage pool 'no-such-pool' is not defined"):
            h.storage.create_disk("x", 1)


# -- lifecycle ------------------------------------------------------------------------------
def test_lifecycle(host: Host, guest: Guest, events: Events) -> None:
    assert guest.state() == "shutdown"
    guest.start()
    assert guest.state() == "running"
    guest.start()  # running already: fine
    assert guest.shutdown(timeout=5) is True
    assert guest.state() == "shutdown"
    assert guest.shutdown(timeout=5) is True  # stopped already
    guest.start()
    guest.reboot()
    assert guest.state() == "running"
    guest.force_shutdown()
    guest.force_shutdown()  # idempotent
    assert guest.state() == "shutdown"
    assert host.list_guests()[guest.name] == "shutdown"


def test_pause_and_resume(guest: Guest, events: Events) -> None:
    guest.start()
    guest._run("pause", lambda d: d.suspend())
    assert guest.state() == "paused"
    assert events.wait_for(guest.name, "paused")
    guest.resume()
    assert guest.state() == "running"


def test_hibernate_and_resume(host: Host, guest: Guest, events: Events) -> None:
    guest.start()
    guest.hibernate()
    assert guest.has_managed_save()
    assert guest.state() == "hibernated"
    assert host.list_guests()[guest.name] == "hibernated"
    assert events.wait_for(guest.name, "hibernated")
    guest.resume()
    assert guest.state() == "running"
    assert not guest.has_managed_save()
    guest.hibernate()
    guest.start()  # start restores the managed save too
    assert guest.state() == "running" and not guest.has_managed_save()


def test_state_events_reach_on_state(host: Host, guest: Guest, events: Events) -> None:
    guest.start()
    assert events.wait_for(guest.name, "running")
    guest.force_shutdown()
    assert events.wait_for(guest.name, "shutdown")
    names = {n for n, _ in events.seen}
    assert names == {guest.name}


def test_screenshot_is_png(guest: Guest) -> None:
    guest.start()
    png = guest.screenshot()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 100


def test_display_ports(guest: Guest) -> None:
    assert guest.display() == {"listen": "127.0.0.1", "spice": None, "spice_tls": None,
                               "vnc": None}
    guest.start()
    assert guest.display()["listen"] == "127.0.0.1"  # the test driver gives no ports


def test_set_display_password(guest: Guest) -> None:
    with pytest.raises(VirtError, match="not running"):
        guest.set_display_password("secret", datetime.now(UTC) + timedelta(minutes=1))
    with pytest.raises(ValueError):
        guest.set_display_password("", datetime.now(UTC))
    guest.start()
    try:
        guest.set_display_password("secret", datetime.now(UTC) + timedelta(minutes=1))
    except VirtError as err:
        assert "not supported" in str(err)
        pytest.skip(f"test driver cannot update live devices ({err}); covered by the KVM tests")


def test_disk_paths_skip_cdrom(host: Host, name: str) -> None:
    g = host.define(render_domain(name, 256, 1, ["/a/b.qcow2"], "/x.iso", "0.0.0.0", "test"))
    try:
        assert g.disk_paths() == ["/a/b.qcow2"]
    finally:
        g.remove(host.storage)


def test_guest_survives_new_connection(host: Host, guest: Guest) -> None:
    """A Guest looked up before a reconnect finds its domain on the new connection."""
    old = host.conn()
    host._drop(old)  # what the close callback does when libvirtd goes away
    guest.start()
    assert host.conn() is not old
    assert guest.state() == "running"


# -- remove ---------------------------------------------------------------------------------
def test_remove_leaves_nothing(host: Host, name: str) -> None:
    disk = host.storage.create_disk(name, 1)
    g = host.define(render_domain(name, 256, 1, [disk], None, "127.0.0.1", "test"))
    g.start()
    g.hibernate()
    assert g.has_managed_save()
    g.remove(host.storage)
    assert not host.has_guest(name)
    assert not host.storage.exists(disk)
    g.remove(host.storage)  # idempotent


def test_remove_keeps_the_base_image(host: Host, name: str) -> None:
    disk = host.storage.create_disk(name, 1)
    base = host.storage.make_base_image(disk, name)
    clone_disk = host.storage.create_overlay(name + "-1", base)
    clone = host.define(render_domain(name + "-1", 256, 1, [clone_disk], None, "::", "test"))
    clone.start()
    clone.remove(host.storage)
    assert not host.storage.exists(clone_disk)
    assert host.storage.exists(base)
    host.storage.delete(base)


# -- storage --------------------------------------------------------------------------------
def test_storage_disk_overlay_base(host: Host, name: str) -> None:
    st = host.storage
    disk = st.create_disk(name, 3)
    try:
        assert disk.endswith(f"/{name}.qcow2") and st.exists(disk)
        vol = host.conn().storageVolLookupByPath(disk)
        assert vol.info()[1] == 3 << 30
        assert ET.fromstring(vol.XMLDesc()).find("target/format").get("type") == "qcow2"
        with pytest.raises(VirtError, match="exists|already"):
            st.create_disk(name, 1)

        base = st.make_base_image(disk, name)
        assert base.endswith(f"/{name}.base.qcow2")
        assert st.exists(base) and not st.exists(disk)
        mode = ET.fromstring(host.conn().storageVolLookupByPath(base).XMLDesc())
        assert mode.findtext("target/permissions/mode") == "0444"

        over = st.create_overlay(name + "-c", base)
        root = ET.fromstring(host.conn().storageVolLookupByPath(over).XMLDesc())
        assert root.findtext("backingStore/path") == base
        assert root.find("backingStore/format").get("type") == "qcow2"
        assert root.find("target/format").get("type") == "qcow2"
        assert int(root.findtext("capacity")) == 3 << 30

        st.delete(over)
        st.delete(over)  # idempotent
        assert not st.exists(over)
    finally:
        for path in (disk, f"/default-pool/{name}.base.qcow2", f"/default-pool/{name}-c.qcow2"):
            st.delete(path)


def test_storage_bad_input(host: Host) -> None:
    with pytest.raises(ValueError, match="bad volume name"):
        host.storage.create_disk("../etc/x", 1)
    with pytest.raises(ValueError, match="bad disk size"):
        host.storage.create_disk("ok", 0)
    with pytest.raises(VirtError, match="not a volume"):
        host.storage.create_overlay("ok", "/default-pool/missing.qcow2")
    with pytest.raises(VirtError, match="not a volume"):
        host.storage.make_base_image("/default-pool/missing.qcow2", "ok")
    assert not host.storage.exists("/default-pool/ok.qcow2")  # nothing half-made
