"""Hardware changes of a running domain, where libvirt allows them live.

The persistent definition is rewritten from the template by the backend (``Host.define`` on
a running domain sets what it gets at its next start); these functions try the live half and
say whether it took. Each returns True when the running domain has the new value now, False
when libvirt cannot do it live (the change then waits for the next start): a balloon only
goes up to the domain's maximum memory, vCPUs up to its maximum, and some drivers have no
live device update at all.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import libvirt

from ravada.virt.guest import Guest

log = logging.getLogger(__name__)

# libvirt answers these when a live change is impossible for this domain or driver.
_NOT_LIVE = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID,
             libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_INVALID_ARG,
             libvirt.VIR_ERR_CONFIG_UNSUPPORTED, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)


def _try_live(guest: Guest, what: str, fn: object) -> bool:
    """Run ``fn(dom)`` on the running domain; False when it cannot be done live."""
    def run(dom: libvirt.virDomain) -> bool:
        if not dom.isActive():
            return False
        try:
            return fn(dom) is not False  # type: ignore[operator]
        except libvirt.libvirtError as err:
            # Whatever the reason (no support, no free hot-plug slot, a guest that does not
            # answer), the persistent definition already has the change: it waits.
            level = logging.INFO if err.get_error_code() in _NOT_LIVE else logging.WARNING
            log.log(level, "%s of %s waits for the next start: %s", what, guest.name,
                    err.get_error_message())
            return False

    return guest._run(what, run)


def set_memory(guest: Guest, memory_mb: int) -> bool:
    """The running domain's memory (balloon) to ``memory_mb``, when at most its maximum."""
    kib = memory_mb * 1024

    def fn(dom: libvirt.virDomain) -> bool:
        if kib > dom.maxMemory():
            return False  # the balloon cannot go past the maximum the domain started with
        dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return True

    return _try_live(guest, "set memory", fn)


def set_vcpus(guest: Guest, vcpus: int) -> bool:
    """The running domain's vCPUs to ``vcpus``, when at most its maximum (hot plug)."""
    def fn(dom: libvirt.virDomain) -> bool:
        top = dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
        if vcpus > top:
            return False
        dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return True

    return _try_live(guest, "set vcpus", fn)


def set_cdrom(guest: Guest, iso: str | None) -> bool:
    """Insert ``iso`` into (or, None, eject) the running domain's cdrom; True when the live
    domain shows it so (a tray the guest keeps locked is forced: an admin asked)."""
    disk = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    if iso:
        ET.SubElement(disk, "source", file=iso)
    ET.SubElement(disk, "target", dev="sda", bus="sata")
    ET.SubElement(disk, "readonly")
    xml = ET.tostring(disk, encoding="unicode")

    def fn(dom: libvirt.virDomain) -> bool:
        dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE
                              | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)
        source = ET.fromstring(dom.XMLDesc(0)).find("devices/disk[@device='cdrom']/source")
        now = source.get("file") if source is not None else None
        return (now or None) == (iso or None)

    return _try_live(guest, "change the cdrom of", fn)


def attach_disk(guest: Guest, path: str, dev: str) -> bool:
    """Hot-plug the qcow2 volume ``path`` as virtio disk ``dev``."""
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=dev, bus="virtio")
    xml = ET.tostring(disk, encoding="unicode")
    return _try_live(guest, "attach a disk to",
                     lambda dom: dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))


def resize_disk(guest: Guest, dev: str, size_bytes: int) -> bool:
    """Grow disk ``dev`` of the running domain (QEMU's block_resize)."""
    return _try_live(guest, "grow a disk of", lambda dom: dom.blockResize(
        dev, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES))


def disk_sizes(guest: Guest) -> dict[str, tuple[str, int]]:
    """``{dev: (path, capacity in bytes)}`` of the domain's disks (not the cdrom)."""
    def run(dom: libvirt.virDomain) -> dict[str, tuple[str, int]]:
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        out: dict[str, tuple[str, int]] = {}
        conn = dom.connect()
        for disk in root.iterfind("devices/disk[@device='disk']"):
            source, target = disk.find("source"), disk.find("target")
            path = None if source is None else source.get("file")
            dev = None if target is None else target.get("dev")
            if path and dev:
                try:
                    capacity = conn.storageVolLookupByPath(path).info()[1]
                except libvirt.libvirtError:
                    capacity = 0
                out[dev] = (path, capacity)
        return out

    return guest._run("read the disks of", run)
