"""Disks through one libvirt storage pool (:class:`Storage`).

All files are made, found and deleted through the pool (``storageVolCreateXML``,
``storageVolLookupByPath``, ``vol.delete``), so they work for a dir pool on qemu:///system
as well as for the test driver's pool. Disks are qcow2; a clone's disk is a qcow2 overlay
whose ``<backingStore>`` is the base image (O(1) in the disk size); a base image is the
former machine disk renamed to ``<name>.base.qcow2`` and made read-only (mode 0444).
Errors are :class:`~ravada.virt.errors.VirtError`.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt


class Storage:
    """The storage pool ``pool`` of the connection that ``conn()`` returns."""

    def __init__(self, conn: Callable[[], libvirt.virConnect], pool: str) -> None:
        self._conn = conn
        self.pool_name = pool

    def pool(self) -> libvirt.virStoragePool:
        """The live pool object (started and refreshed)."""
        raise NotImplementedError

    def create_disk(self, name: str, size_gb: int) -> str:
        """A blank qcow2 volume ``<name>.qcow2`` of ``size_gb`` GiB; returns its path."""
        raise NotImplementedError

    def create_overlay(self, name: str, backing_path: str) -> str:
        """A qcow2 ``<name>.qcow2`` backed by ``backing_path`` (qcow2); returns its path."""
        raise NotImplementedError

    def make_base_image(self, disk_path: str, name: str) -> str:
        """Turn a machine's disk into the read-only backing image ``<name>.base.qcow2``.

        The disk is renamed (moved, not copied) inside the pool and set to mode 0444;
        returns the new path. The machine must not be running.
        """
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Delete the volume at ``path``; nothing happens when it is already gone."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """True when the pool has a volume at ``path``."""
        raise NotImplementedError
