"""Disks through one libvirt storage pool (:class:`Storage`).

Volumes are made, found and deleted through the pool (``storageVolCreateXML``,
``storageVolLookupByPath``, ``vol.delete``), so the same code serves a dir pool on
qemu:///system and the test driver's pool. Disks are qcow2; a clone's disk is a qcow2
overlay whose ``<backingStore>`` is the base image (O(1) in the disk size). A base image is
the former machine disk renamed to ``<name>.base.qcow2`` with mode 0444: an O(1) rename on a
local dir pool, a copy through the pool (``storageVolCreateXMLFrom``) elsewhere.

- ``create_disk(name, size_gb) -> path``
- ``create_overlay(name, backing_path, fresh=False) -> path``
- ``volumes_named(name) -> [path]`` (a machine's own ``<name>.qcow2``, ``<name>.base.qcow2``)
- ``make_base_image(disk_path, name) -> path``
- ``resize(path, size_bytes)`` (grow only), ``delete(path)`` (idempotent), ``exists(path) -> bool``

Each method looks the pool up once (``storagePoolLookupByName``): a click's new clone
checks its name is free and makes its overlay in one call.

Errors are :class:`~ravada.virt.errors.VirtError` (:class:`VolumeExists` when a fresh
overlay's name is taken); bad names or sizes raise ``ValueError``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import libvirt

from ravada.virt.errors import VirtError, VolumeExists
from ravada.virt.xml import NAME_RE

Call = Callable[[str, Callable[[libvirt.virConnect], Any]], Any]
LOCAL_POOL_TYPES = ("dir", "fs", "netfs")
OWN_SUFFIXES = (".qcow2", ".base.qcow2")  # a machine's disk, and its base image


def _volume_xml(name: str, capacity: int, backing: str | None = None,
                mode: str | None = None) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type="qcow2")
    if mode:
        ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = mode
    if backing:
        store = ET.SubElement(vol, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise ValueError(f"bad volume name {name!r}: use letters, digits, '_', '.', '+', '-'")


class Storage:
    """The storage pool ``pool``; ``call(what, fn)`` runs ``fn(conn)`` the way :class:`Host`
    does (live connection, one retry, libvirt errors turned into ``VirtError``)."""

    def __init__(self, call: Call, pool: str) -> None:
        self._call = call
        self.pool_name = pool

    def _pool(self, conn: libvirt.virConnect) -> libvirt.virStoragePool:
        try:
            pool = conn.storagePoolLookupByName(self.pool_name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise VirtError(f"storage pool {self.pool_name!r} is not defined") from None
            raise
        if not pool.isActive():
            pool.create(0)
        return pool

    def pool(self) -> libvirt.virStoragePool:
        """The live pool object (started if it was not)."""
        return self._call(f"storage pool {self.pool_name}", self._pool)

    @staticmethod
    def _lookup(conn: libvirt.virConnect, path: str,
                pool: libvirt.virStoragePool | None = None) -> libvirt.virStorageVol | None:
        """The volume at ``path`` or None; refreshes ``pool`` once when it is not known."""
        for attempt in (0, 1):
            try:
                return conn.storageVolLookupByPath(path)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
            if attempt == 0 and pool is not None:
                pool.refresh(0)
            else:
                break
        return None

    def create_disk(self, name: str, size_gb: int) -> str:
        """A blank qcow2 volume ``<name>.qcow2`` of ``size_gb`` GiB; returns its path."""
        _check_name(name)
        if not isinstance(size_gb, int) or isinstance(size_gb, bool) or not 1 <= size_gb <= 65536:
            raise ValueError(f"bad disk size {size_gb!r}: an integer number of GiB from 1")

        def run(conn: libvirt.virConnect) -> str:
            vol = self._pool(conn).createXML(_volume_xml(f"{name}.qcow2", size_gb << 30), 0)
            return vol.path()

        return self._call(f"create disk {name}.qcow2", run)

    @staticmethod
    def _named(pool: libvirt.virStoragePool, name: str) -> list[str]:
        """Paths of ``name``'s own volumes in ``pool`` (see :data:`OWN_SUFFIXES`)."""
        found = []
        for suffix in OWN_SUFFIXES:
            try:
                found.append(pool.storageVolLookupByName(name + suffix).path())
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
        return found

    def volumes_named(self, name: str) -> list[str]:
        """Paths of the volumes that belong to machine ``name`` (disk and base image)."""
        return self._call(f"look up volumes of {name}",
                          lambda conn: self._named(self._pool(conn), name))

    def create_overlay(self, name: str, backing_path: str, fresh: bool = False) -> str:
        """A qcow2 ``<name>.qcow2`` backed by ``backing_path`` (qcow2); returns its path.

        ``fresh``: for a new machine, refuse (:class:`VolumeExists`) when ``name`` already
        has volumes, checked in the same pool call as the creation."""
        _check_name(name)

        def run(conn: libvirt.virConnect) -> str:
            pool = self._pool(conn)
            if fresh and (taken := self._named(pool, name)):
                raise VolumeExists(f"a volume of {name!r} already exists: {taken[0]}")
            backing = self._lookup(conn, backing_path, pool)
            if backing is None:
                raise VirtError(f"base image {backing_path} is not a volume of any pool")
            capacity = backing.info()[1]
            vol = pool.createXML(_volume_xml(f"{name}.qcow2", capacity, backing_path), 0)
            return vol.path()

        return self._call(f"create overlay {name}.qcow2 on {backing_path}", run)

    def make_base_image(self, disk_path: str, name: str) -> str:
        """Turn a machine's disk into the read-only backing image ``<name>.base.qcow2``.

        On a local dir pool the file is renamed (O(1)) and set to mode 0444; on other pools
        it is copied through the pool with mode 0444 and the original deleted. Returns the
        new path. The machine using ``disk_path`` must not be running.
        """
        _check_name(name)
        new_name = f"{name}.base.qcow2"

        def run(conn: libvirt.virConnect) -> str:
            pool = self._pool(conn)
            vol = self._lookup(conn, disk_path, pool)
            if vol is None:
                raise VirtError(f"disk {disk_path} is not a volume of any pool")
            if vol.storagePoolLookupByVolume().name() != pool.name():
                raise VirtError(f"disk {disk_path} is not in storage pool {pool.name()!r}")
            root = ET.fromstring(pool.XMLDesc(0))
            target_dir = root.findtext("target/path") or ""
            new_path = os.path.join(target_dir, new_name)
            local = root.get("type") in LOCAL_POOL_TYPES and _is_local(conn)
            old = self._lookup(conn, new_path)
            if old is not None or os.path.lexists(new_path):
                if old is None or _backing(vol) != new_path:
                    raise VirtError(f"base image {new_path} exists already")
                # The machine was a base before (remove_base left it an overlay on its
                # former base image): the overlay, flattened, becomes the new base image.
                overlay, vol = vol, _copy(pool, vol, f"{name}.base-new.qcow2")
                overlay.delete(0)
                old.delete(0)
            source = vol.path()
            if local and os.path.isfile(source):
                os.rename(source, new_path)
                os.chmod(new_path, 0o444)
                pool.refresh(0)
                return new_path
            new = _copy(pool, vol, new_name)
            vol.delete(0)
            return new.path()

        return self._call(f"make base image {new_name} from {disk_path}", run)

    def resize(self, path: str, size_bytes: int) -> None:
        """Grow the volume at ``path`` to ``size_bytes`` (never shrinks: data would be lost).

        The machine using it must be shut off (a running one grows through its domain)."""
        def run(conn: libvirt.virConnect) -> None:
            vol = self._lookup(conn, path, self._pool(conn))
            if vol is None:
                raise VirtError(f"disk {path} is not a volume of any pool")
            if size_bytes <= vol.info()[1]:
                raise VirtError(f"disk {path} is already {vol.info()[1] >> 30} GiB: "
                                "a disk only grows")
            vol.resize(size_bytes, 0)

        self._call(f"grow volume {path}", run)

    def delete(self, path: str) -> None:
        """Delete the volume at ``path``; nothing happens when it is already gone."""

        def run(conn: libvirt.virConnect) -> None:
            vol = self._lookup(conn, path, self._pool(conn))
            if vol is None:
                return
            try:
                vol.delete(0)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise

        self._call(f"delete volume {path}", run)

    def exists(self, path: str) -> bool:
        """True when a pool has a volume at ``path``."""
        return self._call(f"look up volume {path}",
                          lambda conn: self._lookup(conn, path, self._pool(conn)) is not None)


def _backing(vol: libvirt.virStorageVol) -> str | None:
    """The path of a volume's backing image, or None."""
    return ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")


def _copy(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol,
          new_name: str) -> libvirt.virStorageVol:
    """A read-only copy of ``vol`` named ``new_name`` (its backing chain flattened)."""
    capacity = vol.info()[1]
    return pool.createXMLFrom(_volume_xml(new_name, capacity, mode="0444"), vol, 0)


def _is_local(conn: libvirt.virConnect) -> bool:
    """True when the connection's files are this machine's (no remote host in the URI)."""
    uri = conn.getURI()
    if conn.getType().lower() == "test" or "://" not in uri:
        return False
    return uri.split("://", 1)[1].startswith("/")
