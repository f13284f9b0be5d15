"""The Debian desktop guest (scripts/build-guest-image.sh) under the product's domain XML.

Real libvirtd + QEMU (``-m kvm``). The image is the one ``make guest-image`` caches
(``$RAVADA_GUEST_IMAGE``); ``make test-runtime`` builds it first. Proves: it boots to the
desktop (its wallpaper colour on the screen) with 512 MiB, the guest agent's connect event
arrives and ``Guest.agent_info()`` reads the hostname, and ``Guest.shutdown`` (agent + ACPI)
stops it without a forced power-off.

The domain is the product's XML with ``<domain type='qemu'>`` (TCG) by default: the nested
KVM of this project's machines runs SeaBIOS and iPXE but stalls in GRUB, SYSLINUX and the
Linux kernel's decompressor (measured: no "Decompressing Linux" after 60 s, while TCG reaches
the desktop in 110-190 s on the loaded 2-core machine; this test passed there with the desktop
after 191.6 s, the agent's event by 193.0 s and a clean shutdown in 17.4 s).
``RAVADA_DESKTOP_DOMAIN_TYPE=kvm`` runs it on KVM where KVM works, with the 30 s boot limit
and 20 s shutdown limit of issue #10.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvm import Cleanup
from PIL import Image

from ravada.virt import Guest, Host, render_domain

pytestmark = pytest.mark.kvm
IMAGE = Path(os.environ.get("RAVADA_GUEST_IMAGE", "/var/cache/ravada-ci/debian-desktop.qcow2"))
WALLPAPER = (0x34, 0x65, 0xA4)  # xsetroot in the image's .xinitrc
DOMAIN_TYPE = os.environ.get("RAVADA_DESKTOP_DOMAIN_TYPE", "qemu")
BOOT_LIMIT = 30.0 if DOMAIN_TYPE == "kvm" else 300.0
SHUTDOWN_LIMIT = 20.0 if DOMAIN_TYPE == "kvm" else 60.0  # measured under TCG: 17.4 s


def wallpaper_share(png: bytes) -> float:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((img.width // 4, img.height // 4))
    near = sum(1 for px in img.getdata()
               if all(abs(c - w) <= 12 for c, w in zip(px, WALLPAPER, strict=True)))
    return near / (img.width * img.height)


@pytest.fixture(scope="module")
def desktop_image(kvm_host: Host) -> Iterator[str]:
    """The cached guest image copied into the test pool (a base image: read-only)."""
    if not IMAGE.exists():
        pytest.skip(f"no guest image at {IMAGE}: run `make guest-image`")
    pool = kvm_host.storage.pool()
    pool_dir = Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "")
    dest = pool_dir / "desktop-test.image.qcow2"
    shutil.copyfile(IMAGE.resolve(), dest)
    dest.chmod(0o444)
    pool.refresh(0)
    yield str(dest)
    kvm_host.storage.delete(str(dest))


class AgentEvents:
    """``on_agent`` collector: waits for a domain's agent to connect (libvirt event)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: dict[str, bool] = {}

    def __call__(self, name: str, connected: bool) -> None:
        with self.cond:
            self.seen[name] = connected
            self.cond.notify_all()

    def wait_connected(self, name: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.seen.get(name) is True, timeout)


def _wait_desktop(g: Guest, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if wallpaper_share(g.screenshot()) >= 0.25:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{g.name}: no desktop after {timeout:.0f} s "
                         f"(wallpaper share {wallpaper_share(g.screenshot()):.3f})")


def test_desktop_boots_reports_its_agent_and_shuts_down_cleanly(
        kvm_host: Host, kvm_cleanup: Cleanup, desktop_image: str) -> None:
    events = AgentEvents()
    kvm_host.on_agent = events
    try:
        name = kvm_cleanup.guest("kvmd-" + uuid.uuid4().hex[:8])
        disk = kvm_cleanup.path(kvm_host.storage.create_overlay(name, desktop_image))
        g = kvm_host.define(render_domain(name, 512, 2, [disk], None, "127.0.0.1",
                                          DOMAIN_TYPE))
        assert g.agent_info() is None  # not running: no agent, no error
        start = time.monotonic()
        g.start()
        boot = _wait_desktop(g, timeout=BOOT_LIMIT)
        assert events.wait_connected(name, 120), "no agent-connected event"
        agent_at = time.monotonic() - start
        info = g.agent_info()
        assert info is not None and info["hostname"] == "ravada-desktop", info
        assert isinstance(info["addresses"], list)
        assert all(not a.startswith(("127.", "::1")) for a in info["addresses"]), info
        t0 = time.monotonic()
        assert g.shutdown(SHUTDOWN_LIMIT), "the guest did not stop on agent/ACPI shutdown"
        down = time.monotonic() - t0
        print(f"\n{name}: desktop after {boot:.1f} s, agent by {agent_at:.1f} s, "
              f"clean shutdown in {down:.1f} s")
        assert g.state() == "shutdown"
        assert boot <= BOOT_LIMIT, f"desktop after {boot:.1f} s"
        assert down < SHUTDOWN_LIMIT
    finally:
        kvm_host.on_agent = None
