"""Machine helpers shared by handlers, events, recovery and the CLI."""

from __future__ import annotations

import contextlib
import logging
import re

import libvirt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ravada import limits
from ravada.back.context import Context
from ravada.back.errors import RequestError
from ravada.db import FirewallRule, Machine
from ravada.virt import GuestNotFound

log = logging.getLogger(__name__)

NAME_RE = limits.MACHINE_NAME_RE  # use with fullmatch (see ravada.limits)
MAX_NAME = 64  # Machine.name, libvirt names and firewall comments all fit 64
STOPPED = ("shutdown", "hibernated", "unknown", "failed")


def get_machine(s: Session, machine_id: int | None) -> Machine:
    """The machine row or a clear RequestError."""
    if machine_id is None:
        raise RequestError("this command needs a machine (machine_id is missing)")
    machine = s.get(Machine, machine_id)
    if machine is None:
        raise RequestError(f"machine {machine_id} does not exist")
    return machine


def check_name(name: object) -> str:
    """A new machine's name by the rule the front checks too (``ravada.limits``)."""
    if not limits.machine_name_ok(name):
        raise RequestError(f"bad machine name {name!r}: {limits.MACHINE_NAME_HINT}")
    assert isinstance(name, str)
    return name


def clone_name(s: Session, base: str, username: str) -> str:
    """``<base>-<username>`` made safe for libvirt and unique among machines."""
    user = re.sub(r"[^a-zA-Z0-9_-]+", "-", username).strip("-") or "user"
    stem = f"{base}-{user}"[:MAX_NAME]
    name, n = stem, 1
    while s.scalar(select(Machine.id).where(Machine.name == name)) is not None:
        n += 1
        suffix = f"-{n}"
        name = stem[: MAX_NAME - len(suffix)] + suffix
    return name


def volume_path(ctx: Context, volume: str) -> str | None:
    """Path of ``volume`` in the pool, or None when it does not exist."""
    try:
        return ctx.storage.pool().storageVolLookupByName(volume).path()
    except libvirt.libvirtError:
        return None


IMAGE_SUFFIX = ".image.qcow2"


def image_path(ctx: Context, image: object) -> str | None:
    """Path of the disk image volume ``<stem>.image.qcow2`` in the pool, or None for None.

    A base made from an image gets an overlay on it; the image itself is never written or
    deleted by Ravada. Only the admin CLI passes images (the front has no such field).
    """
    if image is None:
        return None
    stem = image[: -len(IMAGE_SUFFIX)] if isinstance(image, str) else ""
    if not isinstance(image, str) or not image.endswith(IMAGE_SUFFIX) or not NAME_RE.match(stem):
        raise RequestError(f"bad image {image!r}: a volume name <name>{IMAGE_SUFFIX} "
                           "in the storage pool")
    with contextlib.suppress(libvirt.libvirtError):
        ctx.storage.pool().refresh(0)  # the file may have been copied in just now
    path = volume_path(ctx, image)
    if path is None:
        raise RequestError(f"no image {image!r} in storage pool {ctx.storage.pool_name!r}")
    return path


def own_volumes(ctx: Context, name: str) -> list[str]:
    """Paths of the volumes named after machine ``name`` (disk and base image)."""
    return ctx.storage.volumes_named(name)


def forget_access(s: Session, machine: Machine) -> None:
    """The database side of closing a display: firewall rows, Machine.display.

    The iptables side (``ctx.firewall.close``) runs BEFORE the write session: no libvirt
    or iptables call happens while a database write transaction is open.
    """
    s.execute(delete(FirewallRule).where(FirewallRule.machine_id == machine.id))
    machine.display = None


def discard(ctx: Context, name: str, machine_id: int | None = None) -> None:
    """Remove whatever exists of machine ``name``: domain, its volumes, firewall, row.

    Used to undo a half-made create/clone and by ``remove``. Idempotent.
    """
    with contextlib.suppress(GuestNotFound):
        ctx.host.guest(name).remove(ctx.storage)
    for path in own_volumes(ctx, name):
        ctx.storage.delete(path)
    ctx.firewall.close(name)
    with ctx.db.session() as s:
        q = select(Machine).where(
            Machine.id == machine_id if machine_id is not None else Machine.name == name)
        machine = s.scalar(q)
        if machine is not None:
            s.execute(delete(FirewallRule).where(FirewallRule.machine_id == machine.id))
            s.delete(machine)
    log.info("discarded machine %s", name)
