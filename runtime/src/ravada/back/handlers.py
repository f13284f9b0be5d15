"""One function per request command: ``handler(ctx, job) -> result dict``.

A handler raises :class:`~ravada.back.errors.RequestError` (or the virt layer's
``VirtError``) with a clear message to fail its request; whatever it half-made is
removed first. Handlers also write ``Machine.state`` / ``Machine.display`` so a
finished request leaves a consistent row (lifecycle events do it too).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update

from ravada.back import basecopy, files, isolib, isos
from ravada.back.args import DISK_GB, MEMORY_MB, VCPUS, int_arg, iso_path
from ravada.back.cloning import clone
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.hardware import change_hardware
from ravada.back.machines import check_name, discard, image_path, own_volumes
from ravada.back.power import (
    force_shutdown,
    hibernate,
    open_display,
    reboot,
    resume,
    screenshot,
    shutdown,
    start,
)
from ravada.back.steps import (
    Result,
    define_new,
    domain_xml,
    find_user,
    guest_of,
    load,
    new_machine,
)
from ravada.back.sync import sync_all
from ravada.back.users import close_user
from ravada.db import Machine

Handler = Callable[[Context, Job], Result]


def create(ctx: Context, job: Job) -> Result:
    args = job.args
    name = check_name(args.get("name"))
    memory_mb = int_arg(args, "memory_mb", *MEMORY_MB, default=1024)
    vcpus = int_arg(args, "vcpus", *VCPUS, default=1)
    disk_gb = int_arg(args, "disk_gb", *DISK_GB, default=None)
    iso = iso_path(ctx, args.get("iso"))
    image = image_path(ctx, args.get("image"))
    if image is not None and (iso is not None or disk_gb is not None):
        raise RequestError("create takes an image alone, without iso or disk_gb")
    if iso is None and disk_gb is None and image is None:
        raise RequestError("create needs an iso, a disk_gb, or both (or an image)")
    owner_id = args.get("owner_id", job.user_id)
    if owner_id is not None:
        find_user(ctx, owner_id)
    with ctx.db.session() as s:
        if s.scalar(select(Machine.id).where(Machine.name == name)) is not None:
            raise RequestError(f"a machine named {name!r} already exists")
    if ctx.host.has_guest(name) or own_volumes(ctx, name):
        raise RequestError(f"a libvirt domain or volume named {name!r} already exists")
    machine_id = new_machine(ctx, job, name=name, owner_id=owner_id, memory_mb=memory_mb,
                              vcpus=vcpus, disk_gb=disk_gb or 0, iso=args.get("iso") or None)

    def disks() -> list[str]:
        if image:  # copy-on-write on the image: O(1), the image stays as it is
            return [ctx.storage.create_overlay(name, image)]
        return [ctx.storage.create_disk(name, disk_gb)] if disk_gb else []

    define_new(ctx, name, machine_id, disks, memory_mb, vcpus, iso)
    return {"machine_id": machine_id}


def prepare_base(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is already a base")
    if machine.base_id is not None:
        raise RequestError(f"machine {machine.name!r} is a clone: a base cannot be a clone")
    guest = guest_of(ctx, machine)
    state = guest.state()
    if state != "shutdown":
        raise RequestError(f"machine {machine.name!r} must be shut down first (it is {state})")
    disks = guest.disk_paths()
    if len(disks) != 1:
        raise RequestError(f"machine {machine.name!r} needs exactly one disk to become a base "
                           f"(it has {len(disks)})")
    base_image = ctx.storage.make_base_image(disks[0], machine.name)
    # The row was written through the front: the same check as a request's argument.
    iso = (isos.resolve(ctx.config.front.iso_dir, machine.iso, must_exist=False)
           if machine.iso else None)
    ctx.host.define(domain_xml(ctx, machine.name, machine.memory_mb, machine.vcpus, [base_image],
                         iso, uuid=guest.uuid, hardware=machine.hardware))
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(is_base=True))
    copies = basecopy.queue_copies(ctx, machine.id)  # the other nodes fetch it
    return {"base_image": base_image, **({"copies": copies} if copies else {})}


def _clone_count(ctx: Context, base_id: int) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Machine)
                        .where(Machine.base_id == base_id)) or 0


def remove_base(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    if not machine.is_base:
        raise RequestError(f"machine {machine.name!r} is not a base")
    clones = _clone_count(ctx, machine.id)
    if clones:
        raise RequestError(f"base {machine.name!r} still has {clones} clone(s): remove them first")
    guest = guest_of(ctx, machine)
    base_image = guest.disk_paths()[0]
    # The machine gets a writable overlay on its former base image (kept read-only).
    overlay = ctx.storage.create_overlay(machine.name, base_image)
    try:
        ctx.host.define(domain_xml(ctx, machine.name, machine.memory_mb, machine.vcpus, [overlay],
                             None, uuid=guest.uuid, hardware=machine.hardware))
    except BaseException:
        ctx.storage.delete(overlay)
        raise
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(is_base=False))
    basecopy.forget_node_copies(ctx, machine.id)
    return {}


def remove(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    clones = _clone_count(ctx, machine.id)
    if clones:
        raise RequestError(f"machine {machine.name!r} is a base with {clones} clone(s): "
                           "remove them first")
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(state="removing"))
    discard(ctx, machine.name, machine.id)
    files.remove_private(ctx.screenshot_dir, f"{machine.id}.png")
    return {}


def refresh(ctx: Context, job: Job) -> Result:
    return sync_all(ctx)


HANDLERS: dict[str, Handler] = {
    "create": create,
    "prepare_base": prepare_base,
    "remove_base": remove_base,
    "clone": clone,
    "start": start,
    "shutdown": shutdown,
    "force_shutdown": force_shutdown,
    "reboot": reboot,
    "hibernate": hibernate,
    "resume": resume,
    "remove": remove,
    "screenshot": screenshot,
    "open_display": open_display,
    "refresh": refresh,
    "close_user": close_user,
    "hardware": change_hardware,
    "copy_base": basecopy.copy,
    **isolib.HANDLERS,
}

# Safe to run again after a backend died in the middle of them (see recovery).
RETRYABLE = frozenset({"start", "shutdown", "force_shutdown", "hibernate", "resume",
                       "open_display", "refresh", "screenshot", "remove", "close_user",
                       "iso_import", "iso_download", "iso_scan", "copy_base"})
