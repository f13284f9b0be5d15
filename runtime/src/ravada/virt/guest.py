"""One libvirt domain (:class:`Guest`), the thing a Ravada machine runs as.

States: ``running``, ``shutdown``, ``paused``, ``hibernated`` (shut off with a managed save).
``shutdown(timeout)`` asks the guest agent (falling back to the ACPI power button when no
agent answers) and waits for libvirt's lifecycle event (no polling); ``agent_info()`` is what
the guest agent reports (hostname, addresses) or None;
``hibernate()`` is ``managedSave``; ``start()`` and ``resume()`` restore a managed save.
``display()`` reads the ports from the LIVE XML; ``set_display_password()`` sets a one-time
password with an expiry on the SPICE and the VNC graphics of the running domain (VNC uses only
the first 8 characters: a QEMU limit). ``remove(storage)`` destroys, drops the managed save,
undefines and deletes the domain's own disks (never the base image its overlay points at).
Every method works through :meth:`Host.call` (live connection, one retry after a reconnect);
errors are :class:`~ravada.virt.errors.VirtError`, and
:class:`~ravada.virt.errors.GuestNotFound` when the domain is gone.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import libvirt

from ravada.virt import agent
from ravada.virt.errors import GuestNotFound, NotRunning, VirtError

if TYPE_CHECKING:
    from ravada.virt.host import Host
    from ravada.virt.storage import Storage

__all__ = ["Guest", "GuestNotFound", "VirtError", "domain_state"]

R = TypeVar("R")
STOPPED = ("shutdown", "hibernated")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: "shutdown",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",  # shutting down, still running
    libvirt.VIR_DOMAIN_SHUTOFF: "shutdown",
    libvirt.VIR_DOMAIN_CRASHED: "shutdown",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}
# The guest agent first (a clean shutdown from inside), the ACPI power button when no agent.
SHUTDOWN_FLAGS = (libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
                  | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    # drivers without NVRAM/checkpoints (the test driver) refuse those flags
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
)


log = logging.getLogger(__name__)


def domain_state(dom: libvirt.virDomain) -> str:
    """Our state name for a libvirt domain."""
    state = _STATE.get(dom.state(0)[0], "shutdown")
    if state == "shutdown" and dom.hasManagedSaveImage(0):
        return "hibernated"
    return state


def _is(err: libvirt.libvirtError, *codes: int) -> bool:
    return err.get_error_code() in codes


def _display_of(root: ET.Element) -> dict:
    """The display ports and listen address in a domain's live XML (see Guest.display)."""
    running = root.get("id") is not None
    info: dict = {"listen": None, "spice": None, "spice_tls": None, "vnc": None}

    def port(value: str | None) -> int | None:
        return int(value) if running and value and int(value) > 0 else None

    for gfx in root.iterfind("devices/graphics"):
        kind = gfx.get("type")
        if kind not in ("spice", "vnc"):
            continue
        listen = gfx.find("listen[@type='address']")
        address = listen.get("address") if listen is not None else gfx.get("listen")
        info["listen"] = info["listen"] or address
        if kind == "spice":
            info["spice"] = port(gfx.get("port"))
            info["spice_tls"] = port(gfx.get("tlsPort"))
        else:
            info["vnc"] = port(gfx.get("port"))
    return info


class Guest:
    """A domain of ``host``; ``name`` and ``uuid`` are fixed when it is looked up."""

    def __init__(self, host: Host, dom: libvirt.virDomain) -> None:
        self.host = host
        self.name: str = dom.name()
        self.uuid: str = dom.UUIDString()
        self._dom = dom
        self._generation = host.generation

    def __repr__(self) -> str:
        return f"Guest({self.name!r}, {self.uuid})"

    def _run(self, what: str, fn: Callable[[libvirt.virDomain], R]) -> R:
        """``fn(dom)`` through the host, the domain looked up again after a reconnect."""

        def call(conn: libvirt.virConnect) -> R:
            if self._generation != self.host.generation or self._dom.connect() is not conn:
                self._dom = conn.lookupByUUIDString(self.uuid)
                self._generation = self.host.generation
            return fn(self._dom)

        return self.host.call(f"{what} {self.name}", call)

    def state(self) -> str:
        """``running``, ``shutdown``, ``paused`` or ``hibernated``."""
        return self._run("get state of", domain_state)

    def is_active(self) -> bool:
        """True while the domain runs (or is paused)."""
        return bool(self._run("check", lambda d: d.isActive()))

    def start(self) -> None:
        """Start (restores the managed save when there is one); running already is fine,
        paused is resumed."""

        def run(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                if dom.state(0)[0] == libvirt.VIR_DOMAIN_PAUSED:
                    dom.resume()
                return
            dom.create()

        self._run("start", run)
        self.host.note_state(self.name, self.state())

    def shutdown(self, timeout: float) -> bool:
        """Clean shutdown through the guest agent or ACPI; wait up to ``timeout`` s for the
        stop event. True if it stopped."""
        if self.state() in STOPPED:
            return True
        since = self.host.event_seq()

        def run(dom: libvirt.virDomain) -> None:
            try:
                try:
                    dom.shutdownFlags(SHUTDOWN_FLAGS)
                except libvirt.libvirtError as err:
                    # drivers without agent/ACPI modes (the test driver) take the plain call
                    if not _is(err, libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT,
                               libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                        raise
                    dom.shutdown()
            except libvirt.libvirtError as err:
                if not (_is(err, libvirt.VIR_ERR_OPERATION_INVALID) and not dom.isActive()):
                    raise  # "domain is not running" after a race is fine

        self._run("shut down", run)
        if self.host.wait_for_state(self.name, STOPPED, timeout, since=since):
            return True
        return self.state() in STOPPED  # events lost (reconnect): ask once

    def force_shutdown(self) -> None:
        """Power off (``destroy``); nothing happens when it is not running."""

        def run(dom: libvirt.virDomain) -> None:
            try:
                dom.destroy()
            except libvirt.libvirtError as err:
                if not _is(err, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise

        self._run("force shutdown of", run)
        self.host.note_state(self.name, self.state())

    def reboot(self) -> None:
        """Ask a running domain to reboot (ACPI); a reset where the driver cannot."""

        def run(dom: libvirt.virDomain) -> None:
            try:
                dom.reboot(0)
            except libvirt.libvirtError as err:
                if not _is(err, libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                           libvirt.VIR_ERR_AGENT_UNRESPONSIVE):
                    raise
                dom.reset(0)

        self._run("reboot", run)

    def agent_info(self) -> dict | None:
        """``{"hostname", "addresses"}`` from the guest agent; None when no agent answers."""
        return self._run("ask the guest agent of", agent.read_info)

    def hibernate(self, timeout: float = math.inf) -> None:
        """Save the running domain's memory to a managed save and stop it.

        ``managedSave`` blocks until QEMU has written all the memory; past ``timeout``
        seconds the save job is aborted (``abortJob``), the domain keeps running and a
        VirtError says so: a request's deadline ends the wait instead of pinning a worker.
        """

        def run(dom: libvirt.virDomain) -> None:
            aborted, returned = threading.Event(), threading.Event()

            def abort() -> None:
                aborted.set()
                while not returned.is_set():  # the job may not have started yet
                    try:
                        dom.abortJob()
                        return
                    except libvirt.libvirtError as err:
                        log.debug("abort managed save of %s: %s", self.name, err)
                    returned.wait(0.05)

            timer = threading.Timer(timeout, abort) if math.isfinite(timeout) else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                dom.managedSave(0)
            except libvirt.libvirtError:
                if aborted.is_set():
                    raise VirtError(f"hibernate {self.name}: not done within {timeout:.0f} s; "
                                    "aborted, the machine keeps running") from None
                raise
            finally:
                returned.set()
                if timer is not None:
                    timer.cancel()

        self._run("hibernate", run)
        self.host.note_state(self.name, "hibernated")

    def has_managed_save(self) -> bool:
        """True when a managed save image exists."""
        return bool(self._run("check managed save of", lambda d: d.hasManagedSaveImage(0)))

    def resume(self) -> None:
        """paused -> running; hibernated or shut off -> started (from the managed save)."""
        self.start()

    def screenshot(self) -> bytes:
        """The screen of the running domain as PNG bytes."""

        def run(dom: libvirt.virDomain) -> tuple[str, bytes]:
            stream = dom.connect().newStream(0)
            chunks: list[bytes] = []
            try:
                mime = dom.screenshot(stream, 0, 0)
                stream.recvAll(lambda _s, buf, _o: chunks.append(buf) or len(buf), None)
                stream.finish()
            except libvirt.libvirtError:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise
            return mime or "", b"".join(chunks)

        mime, data = self._run("take a screenshot of", run)
        if data.startswith(PNG_SIGNATURE):
            return data
        try:
            from PIL import Image

            out = io.BytesIO()
            Image.open(io.BytesIO(data)).save(out, format="PNG")
        except Exception as err:  # Pillow missing or an image it cannot read
            raise VirtError(
                f"screenshot of {self.name}: cannot convert {mime} to PNG: {err}") from None
        return out.getvalue()

    def _live_xml(self, flags: int = 0) -> ET.Element:
        return ET.fromstring(self._run("read XML of", lambda d: d.XMLDesc(flags)))

    def display(self) -> dict:
        """``{"listen": ip, "spice": port, "spice_tls": port|None, "vnc": port}`` (live XML).

        Ports are ``None`` when the domain is not running or has no such graphics.
        """
        return _display_of(self._live_xml())

    def set_display_password(self, password: str, valid_to: datetime) -> dict:
        """Set ``password`` on SPICE and VNC of the running domain, valid until ``valid_to``;
        return :meth:`display` as read from the same live XML (:class:`NotRunning` when the
        domain is not running: callers need no state check before).

        A naive ``valid_to`` is taken as UTC. Each graphics element is sent back as the live
        XML has it (type, ports, listen) with ``passwd`` and ``passwdValidTo`` changed: one
        ``updateDeviceFlags`` per graphics, as libvirt takes exactly one device per call
        (virDomainUpdateDeviceFlags parses a single device element; a ``<devices>`` wrapper
        with both is refused). A domain that starts with its password needs neither
        (``render_domain(password=...)``).
        """
        if not password or any(ord(c) < 32 for c in password):
            raise ValueError("display password must be non-empty printable text")
        if valid_to.tzinfo is not None:
            valid_to = valid_to.astimezone(UTC).replace(tzinfo=None)
        until = valid_to.strftime("%Y-%m-%dT%H:%M:%S")
        root = self._live_xml()
        if root.get("id") is None:
            raise NotRunning(f"set display password of {self.name}: machine is not running")
        info = _display_of(root)
        devices = []
        for gfx in root.iterfind("devices/graphics"):
            if gfx.get("type") in ("spice", "vnc"):
                # libvirt refuses VNC passwords over 8 characters; SPICE takes the whole one.
                gfx.set("passwd", password if gfx.get("type") == "spice" else password[:8])
                gfx.set("passwdValidTo", until)
                devices.append(ET.tostring(gfx, encoding="unicode"))
        if not devices:
            raise VirtError(f"set display password of {self.name}: it has no SPICE or VNC display")

        def run(dom: libvirt.virDomain) -> None:
            for xml in devices:
                dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)

        if self.host.domain_type == "test":
            # The test driver has no live device update; the real path runs on KVM
            # (tests/test_virt_kvm.py). Keep the flow hermetic instead of failing.
            log.debug("test driver: display password of %s not applied", self.name)
            return info
        self._run("set display password of", run)
        return info

    def disk_paths(self) -> list[str]:
        """Source paths of the domain's disks (device='disk', not the cdrom)."""
        root = ET.fromstring(self._run("read XML of",
                                       lambda d: d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        paths = []
        for disk in root.iterfind("devices/disk[@device='disk']"):
            source = disk.find("source")
            path = None if source is None else (source.get("file") or source.get("dev"))
            if path:
                paths.append(path)
        return paths

    def remove(self, storage: Storage) -> None:
        """Destroy, drop the managed save, undefine, delete own disks; idempotent.

        Only the disks the domain names are deleted, never the base images behind them.
        """
        try:
            disks = self.disk_paths()
        except GuestNotFound:
            return

        def run(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                try:
                    dom.destroy()
                except libvirt.libvirtError as err:
                    if not _is(err, libvirt.VIR_ERR_OPERATION_INVALID):
                        raise
            if dom.hasManagedSaveImage(0):
                dom.managedSaveRemove(0)
            for flags in _UNDEFINE_FLAGS:
                try:
                    dom.undefineFlags(flags)
                    return
                except libvirt.libvirtError as err:
                    if not _is(err, libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                        raise
            dom.undefine()

        try:
            self._run("remove", run)
        except GuestNotFound:
            pass
        for path in disks:
            storage.delete(path)
