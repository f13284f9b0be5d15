"""The live half of hardware changes on a real QEMU/KVM domain (``-m kvm``).

The test driver has no live device update, cdrom change, hot-plug or block resize; these are
what libvirt + QEMU do with a running machine of the product's template.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from kvm import Cleanup
from test_virt_kvm import IPXE, _img_info, _name

from ravada.virt import Host, render_domain
from ravada.virt import hardware as live

pytestmark = pytest.mark.kvm


def test_live_hardware_changes_on_kvm(kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    name = kvm_cleanup.guest(_name())
    disk = kvm_cleanup.path(kvm_host.storage.create_disk(name, 1))
    g = kvm_host.define(render_domain(name, 256, 1, [disk], None, "127.0.0.1",
                                      kvm_host.domain_type))
    g.start()
    dom = kvm_host.conn().lookupByName(name)

    def live_xml() -> ET.Element:
        return ET.fromstring(dom.XMLDesc(0))

    assert live.set_memory(g, 128) is True  # the balloon goes down
    assert live.set_memory(g, 512) is False  # past the maximum: at the next start
    assert live.set_vcpus(g, 2) is False  # past the maximum vCPUs
    # the empty cdrom takes an ISO and gives it back, live
    assert live.set_cdrom(g, IPXE) is True
    assert live_xml().find("devices/disk[@device='cdrom']/source").get("file") == IPXE
    assert live.set_cdrom(g, None) is True
    source = live_xml().find("devices/disk[@device='cdrom']/source")
    assert source is None or not source.get("file"), source.attrib
    # block resize of the running disk
    assert live.resize_disk(g, "vda", 2 << 30) is True
    assert _img_info(disk)["virtual-size"] == 2 << 30
    # a hot-plugged disk, or (no free slot) a clear False: never an exception
    extra = kvm_cleanup.path(kvm_host.storage.create_disk(name + ".vdb", 1))
    plugged = live.attach_disk(g, extra, "vdb")
    devs = [t.get("dev") for t in live_xml().iterfind("devices/disk/target")]
    assert ("vdb" in devs) is plugged
