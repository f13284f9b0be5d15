"""The baseline: a cold clone with raw libvirt-python, no broker in between.

One round: ``qemu-img create -f qcow2 -b <base> -F qcow2 <overlay>``, ``defineXML``,
``create``, read the display port from the live XML and wait until it accepts a TCP
connection. The domain XML is the one rvd_back gave a real clone (read back from libvirt),
with a new name and disk and the display ports left to autoport, so both sides start the
same kind of machine. Cleanup (destroy, undefine, delete) is not timed.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt  # type: ignore[import-not-found]

GRAPHICS_LIVE_ATTRS = ("port", "tlsPort", "websocket", "passwdValidTo")


def wait_tcp(host: str, port: int, timeout: float = 30.0) -> float:
    """Connect to ``host:port`` until it accepts (retrying every 5 ms); return seconds waited."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return time.perf_counter() - t0
        except OSError as exc:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{host}:{port} did not accept within {timeout} s: {exc}") from None
            time.sleep(0.005)


def display_port(xml: str, kind: str = "vnc") -> tuple[str, int]:
    """(listen address, port) of the ``kind`` graphics of a running domain's XML."""
    root = ET.fromstring(xml)
    for g in root.iter("graphics"):
        if g.get("type") == kind and int(g.get("port", "-1")) > 0:
            listen = g.get("listen") or "127.0.0.1"
            return ("127.0.0.1" if listen in ("0.0.0.0", "::") else listen), int(g.get("port"))
    raise LookupError(f"the domain has no {kind} graphics with a port")


@dataclass
class Template:
    """A domain XML shape plus the base image its disk is an overlay of."""

    root: ET.Element
    backing: str
    pool_dir: str

    def domain_xml(self, name: str, disk: str) -> str:
        root = copy.deepcopy(self.root)
        root.attrib.pop("id", None)
        root.find("name").text = name  # type: ignore[union-attr]
        uuid_el = root.find("uuid")
        if uuid_el is not None:
            uuid_el.text = str(uuid.uuid4())
        disk_el = next(d for d in root.iter("disk") if d.get("device") == "disk")
        disk_el.find("source").set("file", disk)  # type: ignore[union-attr]
        for bs in disk_el.findall("backingStore"):
            disk_el.remove(bs)
        for g in root.iter("graphics"):
            for attr in GRAPHICS_LIVE_ATTRS:
                g.attrib.pop(attr, None)
            g.set("autoport", "yes")
        for iface in root.iter("interface"):
            for mac in iface.findall("mac"):
                iface.remove(mac)
        return ET.tostring(root, encoding="unicode")


def backing_file(path: str) -> str:
    """The backing image of the qcow2 ``path`` (read with ``qemu-img info -U``)."""
    res = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True)
    info = json.loads(res.stdout)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if not backing:
        raise LookupError(f"{path} has no backing file: not a clone's disk")
    return backing if os.path.isabs(backing) else os.path.join(os.path.dirname(path), backing)


def template_from_domain(conn: libvirt.virConnect, name: str) -> Template:
    """The XML shape and base image of the clone ``name`` (as rvd_back defined it)."""
    dom = conn.lookupByName(name)
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    disk_el = next(d for d in root.iter("disk") if d.get("device") == "disk")
    disk = disk_el.find("source").get("file")  # type: ignore[union-attr]
    return Template(root, backing_file(disk), os.path.dirname(disk))


def clone_once(conn: libvirt.virConnect, tpl: Template, kind: str = "vnc",
               name: str | None = None) -> dict[str, float | str]:
    """One timed raw cold clone; returns its timings (seconds). Cleans up after itself."""
    name = name or f"bench-raw-{uuid.uuid4().hex[:8]}"
    overlay = os.path.join(tpl.pool_dir, f"{name}.qcow2")
    xml = tpl.domain_xml(name, overlay)
    dom = None
    t0 = time.perf_counter()
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", tpl.backing,
                        "-F", "qcow2", overlay], check=True, capture_output=True)
        t_img = time.perf_counter()
        dom = conn.defineXML(xml)
        dom.create()
        t_started = time.perf_counter()
        host, port = display_port(dom.XMLDesc(0), kind)
        wait_tcp(host, port)
        t_end = time.perf_counter()
        return {"name": name, "total_s": t_end - t0, "qemu_img_s": t_img - t0,
                "define_create_s": t_started - t_img, "port_wait_s": t_end - t_started}
    finally:
        remove(conn, dom, overlay)


def remove(conn: libvirt.virConnect, dom: libvirt.virDomain | None, overlay: str) -> None:
    """Destroy and undefine ``dom`` and delete ``overlay``; whatever is already gone is fine."""
    if dom is not None:
        for step in (dom.destroy, dom.undefine):
            try:
                step()
            except libvirt.libvirtError:
                pass
    try:
        os.unlink(overlay)
    except FileNotFoundError:
        pass
