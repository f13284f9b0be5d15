"""One libvirt domain (:class:`Guest`), the thing a Ravada machine runs as.

States: ``running``, ``shutdown``, ``paused``, ``hibernated`` (shut off with a managed save).
``shutdown(timeout)`` sends ACPI and waits for libvirt's lifecycle event (no polling);
``hibernate()`` is ``managedSave``; ``start()`` and ``resume()`` restore a managed save.
``display()`` reads the ports from the LIVE XML; ``set_display_password()`` sets a one-time
password with an expiry on the SPICE and the VNC graphics of the running domain.
``remove(storage)`` destroys, drops the managed save, undefines and deletes the domain's own
disks (never the base image its overlay points at). All errors are
:class:`~ravada.virt.errors.VirtError` (:class:`~ravada.virt.errors.GuestNotFound` when the
domain is gone).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import libvirt

from ravada.virt.errors import GuestNotFound, VirtError

if TYPE_CHECKING:
    from ravada.virt.host import Host
    from ravada.virt.storage import Storage

__all__ = ["Guest", "GuestNotFound", "VirtError"]


class Guest:
    """A domain of ``host`` looked up by name; ``name`` and ``uuid`` are fixed at lookup."""

    def __init__(self, host: Host, dom: libvirt.virDomain) -> None:
        self.host = host
        self.name: str = dom.name()
        self.uuid: str = dom.UUIDString()
        self._dom = dom

    def state(self) -> str:
        """``running``, ``shutdown``, ``paused`` or ``hibernated``."""
        raise NotImplementedError

    def start(self) -> None:
        """Start (restores the managed save when there is one); running already is fine."""
        raise NotImplementedError

    def shutdown(self, timeout: float) -> bool:
        """ACPI shutdown; wait up to ``timeout`` s for the stop event. True if it stopped."""
        raise NotImplementedError

    def force_shutdown(self) -> None:
        """Power off (``destroy``); nothing happens when it is not running."""
        raise NotImplementedError

    def reboot(self) -> None:
        """Reboot a running domain (ACPI, falling back to a reset)."""
        raise NotImplementedError

    def hibernate(self) -> None:
        """Save the running domain's memory to a managed save and stop it."""
        raise NotImplementedError

    def has_managed_save(self) -> bool:
        """True when a managed save image exists."""
        raise NotImplementedError

    def resume(self) -> None:
        """paused -> running; hibernated or shut off -> started (from the managed save)."""
        raise NotImplementedError

    def screenshot(self) -> bytes:
        """The screen of the running domain as PNG bytes."""
        raise NotImplementedError

    def display(self) -> dict:
        """``{"listen": ip, "spice": port, "spice_tls": port|None, "vnc": port}`` (live XML).

        Ports are ``None`` when the domain is not running or has no such graphics.
        """
        raise NotImplementedError

    def set_display_password(self, password: str, valid_to: datetime) -> None:
        """Set ``password`` on SPICE and VNC of the running domain, valid until ``valid_to``.

        A naive ``valid_to`` is taken as UTC.
        """
        raise NotImplementedError

    def disk_paths(self) -> list[str]:
        """Source paths of the domain's disks (device='disk', not the cdrom)."""
        raise NotImplementedError

    def remove(self, storage: Storage) -> None:
        """Destroy, drop the managed save, undefine, delete own disks; idempotent."""
        raise NotImplementedError
