"""One libvirt connection (:class:`Host`): guests, lifecycle events, reconnects.

``Host(uri, pool, on_state=None)`` opens ``uri``. ``on_state(name, state)`` is called from a
daemon thread for libvirt lifecycle events, with state one of ``running``, ``shutdown``,
``paused``, ``hibernated`` (a stop that left a managed save); crashes report ``shutdown``.
libvirt's default event loop is registered once per process and runs in a daemon thread.
When libvirtd goes away the close callback triggers a reconnect with backoff (events are
registered again), and every public method retries once on a broken connection.

- ``conn()`` -- the live ``virConnect`` (reconnects when needed)
- ``guest(name)`` -> :class:`~ravada.virt.guest.Guest` (raises ``GuestNotFound``)
- ``has_guest(name)``, ``list_guests()`` -> ``{name: state}``
- ``define(xml)`` -> ``Guest``; ``domain_type`` is ``"test"`` on the test driver, else ``"kvm"``
- ``storage`` -- :class:`~ravada.virt.storage.Storage` on pool ``pool``
- ``wait_for_state(name, states, timeout)`` -- block until an event reports one of ``states``
- ``close()``
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import libvirt

from ravada.virt.errors import GuestNotFound, VirtError
from ravada.virt.guest import Guest
from ravada.virt.storage import Storage

__all__ = ["GuestNotFound", "Host", "VirtError"]

OnState = Callable[[str, str], None]


class Host:
    """A libvirt connection with lifecycle events and reconnects."""

    def __init__(self, uri: str, pool: str, on_state: OnState | None = None) -> None:
        self.uri = uri
        self.on_state = on_state
        self.storage = Storage(self.conn, pool)
        raise NotImplementedError

    @property
    def domain_type(self) -> str:
        """The ``<domain type=...>`` for this driver: ``test`` or ``kvm``."""
        raise NotImplementedError

    def conn(self) -> libvirt.virConnect:
        """The live connection, reconnecting if libvirtd restarted."""
        raise NotImplementedError

    def guest(self, name: str) -> Guest:
        """The domain ``name``; raises ``GuestNotFound``."""
        raise NotImplementedError

    def has_guest(self, name: str) -> bool:
        """True when a domain ``name`` is defined."""
        raise NotImplementedError

    def list_guests(self) -> dict[str, str]:
        """Every defined domain: name -> state."""
        raise NotImplementedError

    def define(self, xml: str) -> Guest:
        """Define (persistently) the domain in ``xml``."""
        raise NotImplementedError

    def wait_for_state(self, name: str, states: Iterable[str], timeout: float) -> bool:
        """Wait (on events, not polling) until ``name`` is in one of ``states``."""
        raise NotImplementedError

    def close(self) -> None:
        """Deregister events and close the connection; the Host is unusable afterwards."""
        raise NotImplementedError
