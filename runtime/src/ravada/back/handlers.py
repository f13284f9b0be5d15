"""One function per request command: ``handler(ctx, job) -> result dict``.

A handler raises :class:`~ravada.back.errors.RequestError` (or the virt layer's
``VirtError``) with a clear message to fail its request; whatever it half-made is
removed first. Handlers also write ``Machine.state`` / ``Machine.display`` so a
finished request leaves a consistent row (lifecycle events do it too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ravada import display as rdisplay
from ravada.back import access, desktops, files, isos, limits, pool, timers
from ravada.back.args import DISK_GB, MEMORY_MB, VCPUS, bool_arg, client_ip_arg, int_arg, iso_path
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.machines import (
    check_name,
    clone_name,
    discard,
    forget_access,
    get_machine,
    image_path,
    own_volumes,
)
from ravada.back.sync import sync_all
from ravada.back.users import close_user
from ravada.db import Machine, Request, User
from ravada.firewall import FirewallError
from ravada.virt import Guest, GuestNotFound, VirtError, render_domain

log = logging.getLogger(__name__)

Result = dict[str, Any]
Handler = Callable[[Context, Job], Result]

def _user_in(s: Session, user_id: Any) -> User:
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise RequestError(f"bad user_id {user_id!r}: an integer")
    user = s.get(User, user_id)
    if user is None:
        raise RequestError(f"user {user_id} does not exist")
    return user


def _user(ctx: Context, user_id: Any) -> User:
    with ctx.db.sessionmaker() as s:
        return _user_in(s, user_id)


# -- helpers ------------------------------------------------------------------------------

def _load(ctx: Context, job: Job) -> Machine:
    with ctx.db.session() as s:
        return get_machine(s, job.machine_id)


def _guest(ctx: Context, machine: Machine) -> Guest:
    try:
        return ctx.host.guest(machine.name)
    except GuestNotFound:
        raise RequestError(f"machine {machine.name!r} has no libvirt domain") from None


def _record(ctx: Context, machine_id: int, guest: Guest) -> str:
    """Write the guest's state (and display, or closed access) to the row; return state.

    Read libvirt, act on iptables, then write: no libvirt or iptables call inside the
    write transaction (it would hold the database's write lock for as long as they take).
    """
    state = guest.state()
    display = guest.display() if state == "running" else None
    if state not in ("running", "paused"):
        ctx.firewall.close(guest.name)
    with ctx.db.session() as s:
        machine = s.get(Machine, machine_id)
        if machine is None:
            return state
        before, machine.state = machine.state, state
        if state == "running":
            machine.display = display
        elif state != "paused":
            forget_access(s, machine)
            machine.guest_info = None  # the agent's report ends with the guest
        timers.on_state(s, machine, before)  # deadlines now; a volatile's removal: events
    return state


def _need_running(guest: Guest, what: str) -> None:
    state = guest.state()
    if state != "running":
        raise RequestError(f"cannot {what} {guest.name!r}: it is {state}, not running")


def _new_machine(ctx: Context, job: Job, **fields: Any) -> int:
    """Insert the row in state ``creating``; a taken name is a clear error."""
    try:
        with ctx.db.session() as s:
            machine = Machine(state="creating", **fields)
            s.add(machine)
            s.flush()
            machine_id = machine.id
            # in the same transaction: a kill right after it still leaves recovery the id
            s.execute(update(Request).where(Request.id == job.id)
                      .values(result={"machine_id": machine_id}))
    except IntegrityError:
        raise RequestError(f"a machine named {fields['name']!r} already exists") from None
    return machine_id


def _xml(ctx: Context, name: str, memory_mb: int, vcpus: int, disks: list[str],
         iso: str | None, uuid: str | None = None,
         password: tuple[str, datetime] | None = None) -> str:
    try:
        return render_domain(name, memory_mb, vcpus, disks, iso, ctx.config.display.listen,
                             domain_type=ctx.host.domain_type, uuid=uuid,
                             spice_tls=ctx.config.display.spice_tls,
                             password=password[0] if password else None,
                             password_valid_to=password[1] if password else None)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def _define_new(ctx: Context, name: str, machine_id: int, make_disks: Callable[[], list[str]],
                memory_mb: int, vcpus: int, iso: str | None,
                password: tuple[str, datetime] | None = None) -> Guest:
    """Make the disks and the domain of a new machine row; on any failure remove all of it.

    ``password``: (password, valid until) of the display when it starts (see ``clone``).
    """
    try:
        guest = ctx.host.define(_xml(ctx, name, memory_mb, vcpus, make_disks(), iso,
                                     password=password))
        with ctx.db.session() as s:  # a domain just defined is shut off
            s.execute(update(Machine).where(Machine.id == machine_id)
                      .values(domain_uuid=guest.uuid, state="shutdown"))
    except BaseException:
        discard(ctx, name, machine_id)
        raise
    return guest


def _open_access(ctx: Context, machine: Machine, disp: dict[str, Any], client_ip: str,
                 password: str, expires: datetime, user_id: int | None = None,
                 console: bool = False) -> Result:
    """The viewer's ports opened to ``client_ip`` (not for the browser console, which
    reaches VNC through rvd_console on loopback), the state and display written with the
    machine's deadlines in one transaction, and the connection info of the (already set)
    ``password``."""
    ports = access.viewer_ports(ctx, disp)
    if not ports and not (console and disp.get("vnc")):
        raise RequestError(f"machine {machine.name!r} has no display ports")
    if not console:
        access.open_for(ctx, machine, ports, client_ip, user_id)
    with ctx.db.session() as s:
        row = s.get(Machine, machine.id)
        if row is not None:
            before, row.state, row.display = row.state, "running", disp
            timers.on_state(s, row, before)  # a clone that just started: its deadlines
    return rdisplay.connection_info(machine.name, disp, ctx.public_host, password, expires)


def open_display_for(ctx: Context, machine_id: int, client_ip: str, user_id: int | None = None,
                     console: bool = False) -> Result:
    """Fresh one-time password, the firewall opened to ``client_ip``, display info.

    ``console``: for the browser console, which reaches VNC through rvd_console on
    loopback: only the password changes, no port is opened to the viewer.
    """
    with ctx.db.sessionmaker() as s:
        machine = get_machine(s, machine_id)
    guest = _guest(ctx, machine)
    _need_running(guest, "open the display of")
    password = rdisplay.new_password()
    expires = rdisplay.valid_until(ctx.config.display.password_lifetime)
    disp = guest.set_display_password(password, expires)  # ports from the same live XML
    return _open_access(ctx, machine, disp, client_ip, password, expires, user_id, console)


def _start(ctx: Context, machine: Machine, client_ip: str | None,
           user_id: int | None = None) -> Result:
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is a base: clone it, or remove_base first")
    guest = _guest(ctx, machine)
    guest.start()
    _record(ctx, machine.id, guest)
    if client_ip:
        return open_display_for(ctx, machine.id, client_ip, user_id)
    return {"state": guest.state()}


# -- handlers -----------------------------------------------------------------------------

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
        _user(ctx, owner_id)
    with ctx.db.session() as s:
        if s.scalar(select(Machine.id).where(Machine.name == name)) is not None:
            raise RequestError(f"a machine named {name!r} already exists")
    if ctx.host.has_guest(name) or own_volumes(ctx, name):
        raise RequestError(f"a libvirt domain or volume named {name!r} already exists")
    machine_id = _new_machine(ctx, job, name=name, owner_id=owner_id, memory_mb=memory_mb,
                              vcpus=vcpus, disk_gb=disk_gb or 0, iso=args.get("iso") or None)

    def disks() -> list[str]:
        if image:  # copy-on-write on the image: O(1), the image stays as it is
            return [ctx.storage.create_overlay(name, image)]
        return [ctx.storage.create_disk(name, disk_gb)] if disk_gb else []

    _define_new(ctx, name, machine_id, disks, memory_mb, vcpus, iso)
    return {"machine_id": machine_id}


def prepare_base(ctx: Context, job: Job) -> Result:
    machine = _load(ctx, job)
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is already a base")
    if machine.base_id is not None:
        raise RequestError(f"machine {machine.name!r} is a clone: a base cannot be a clone")
    guest = _guest(ctx, machine)
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
    ctx.host.define(_xml(ctx, machine.name, machine.memory_mb, machine.vcpus, [base_image],
                         iso, uuid=guest.uuid))
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(is_base=True))
    return {"base_image": base_image}


def _clone_count(ctx: Context, base_id: int) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Machine)
                        .where(Machine.base_id == base_id)) or 0


def remove_base(ctx: Context, job: Job) -> Result:
    machine = _load(ctx, job)
    if not machine.is_base:
        raise RequestError(f"machine {machine.name!r} is not a base")
    clones = _clone_count(ctx, machine.id)
    if clones:
        raise RequestError(f"base {machine.name!r} still has {clones} clone(s): remove them first")
    guest = _guest(ctx, machine)
    base_image = guest.disk_paths()[0]
    # The machine gets a writable overlay on its former base image (kept read-only).
    overlay = ctx.storage.create_overlay(machine.name, base_image)
    try:
        ctx.host.define(_xml(ctx, machine.name, machine.memory_mb, machine.vcpus, [overlay],
                             None, uuid=guest.uuid))
    except BaseException:
        ctx.storage.delete(overlay)
        raise
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(is_base=False))
    return {}


def _make_clone(ctx: Context, job: Job, base: Machine, name: str,
                password: tuple[str, datetime] | None = None,
                **fields: Any) -> tuple[int, Guest]:
    """A new overlay clone of ``base`` (row, volume, domain; all removed on failure).

    ``password``: the display's one-time password and expiry, defined with the domain so
    that starting it for a viewer needs no live device update."""
    base_disks = _guest(ctx, base).disk_paths()
    if not base_disks:
        raise RequestError(f"base {base.name!r} has no disk")
    if ctx.host.has_guest(name) or own_volumes(ctx, name):
        raise RequestError(f"a libvirt domain or volume named {name!r} already exists")
    machine_id = _new_machine(ctx, job, name=name, base_id=base.id, memory_mb=base.memory_mb,
                              vcpus=base.vcpus, disk_gb=base.disk_gb,
                              volatile=bool(base.volatile), **fields)
    guest = _define_new(ctx, name, machine_id,
                        lambda: [ctx.storage.create_overlay(name, base_disks[0])],
                        base.memory_mb, base.vcpus, None, password=password)
    return machine_id, guest


def _pool_clone(ctx: Context, job: Job, base: Machine) -> Result:
    """The pool keeper's refill: one unassigned clone, started when asked."""
    with pool.new_name(ctx, base.name) as name:
        machine_id, guest = _make_clone(ctx, job, base, name, owner_id=None, is_pool=True)
    if bool_arg(job.args, "start"):
        guest.start()
        _record(ctx, machine_id, guest)
    return {"machine_id": machine_id, "pool": True}


def clone(ctx: Context, job: Job) -> Result:
    """A user's desktop of a base: theirs if they have one, a pool clone, or a new clone.

    One desktop per user per base: clicks racing in this backend join the one making it
    (``desktops.making``); another backend's insert hits the unique constraint.
    A new clone that starts for a viewer is defined with its one-time display password in
    the domain XML, so the click makes no live device update; its ports come from one read
    of the live XML, and its state and display rows are written in one transaction.
    """
    args = job.args
    with ctx.db.sessionmaker() as s:  # reads only: the base, and the user
        base = get_machine(s, job.machine_id)
        if not base.is_base:
            raise RequestError(f"machine {base.name!r} is not a base: prepare_base first")
        user = None if args.get("pool") is True else _user_in(s, args.get("user_id",
                                                                          job.user_id))
    if user is None:
        return _pool_clone(ctx, job, base)
    start = bool_arg(args, "start")
    client_ip = client_ip_arg(args, required=False)
    fresh: Guest | None = None
    password: tuple[str, datetime] | None = None
    with desktops.making(base.id, user.id), limits.user_lock(user.id):
        with ctx.db.sessionmaker() as s:
            existing = s.scalar(select(Machine).where(Machine.base_id == base.id,
                                                      Machine.owner_id == user.id))
        if existing is not None and existing.state in ("creating", "removing"):
            raise RequestError(f"your desktop {existing.name!r} is {existing.state} "
                               "(another request is at work on it): try again shortly")
        if (start or client_ip) and (existing is None
                                     or existing.state not in limits.RUNNING):
            limits.check(ctx, user.id, exclude=existing.id if existing else None)
        if existing is not None:
            machine_id = existing.id
        else:
            taken = pool.take(ctx, base.id, user.id) if base.pool_size else None
            if taken is not None:
                machine_id = taken
            else:
                with ctx.db.sessionmaker() as s:
                    name = clone_name(s, base.name, user.name)
                if client_ip:
                    password = (rdisplay.new_password(),
                                rdisplay.valid_until(ctx.config.display.password_lifetime))
                try:
                    machine_id, fresh = _make_clone(ctx, job, base, name, password=password,
                                                    owner_id=user.id)
                except RequestError as exc:
                    if desktops.has_clone(ctx, base.id, user.id):
                        raise RequestError(f"you already have a desktop of {base.name!r} "
                                           "(made by another request): click again") from exc
                    raise
        if fresh is not None and (start or client_ip):
            fresh.start()  # just defined: shut off
            if password is None:
                _record(ctx, machine_id, fresh)
            # else: _open_access below writes the state with the display's rows
        elif start or client_ip:
            with ctx.db.sessionmaker() as s:
                machine = get_machine(s, machine_id)
            if machine.state not in ("running",):
                _start(ctx, machine, None)
        result: Result = {"machine_id": machine_id}
        if client_ip:  # still under the lock: joined clicks open the display one at a time
            try:
                if fresh is not None and password is not None:
                    with ctx.db.sessionmaker() as s:
                        machine = get_machine(s, machine_id)
                    result["display"] = _open_access(ctx, machine, fresh.display(), client_ip,
                                                     *password, user.id)
                else:
                    result["display"] = open_display_for(ctx, machine_id, client_ip, user.id)
            except (RequestError, VirtError, FirewallError) as exc:
                with ctx.db.sessionmaker() as s:
                    name = get_machine(s, machine_id).name
                raise RequestError(f"machine {name!r} is ready and started, but its "
                                   f"display could not be opened: {exc}") from None
    return result


def start(ctx: Context, job: Job) -> Result:
    client_ip = client_ip_arg(job.args, required=False)
    machine = _load(ctx, job)
    if machine.owner_id is None or machine.state in limits.RUNNING:
        return _start(ctx, machine, client_ip, job.user_id)
    with limits.user_lock(machine.owner_id):
        limits.check(ctx, machine.owner_id, exclude=machine.id)
        return _start(ctx, machine, client_ip, job.user_id)


def open_display(ctx: Context, job: Job) -> Result:
    client_ip = client_ip_arg(job.args, required=True)
    assert client_ip is not None
    console = bool_arg(job.args, "console")
    return open_display_for(ctx, _load(ctx, job).id, client_ip, job.user_id, console)


# What a shutdown keeps of its deadline for the power-off and the bookkeeping after the
# ACPI wait (at least FORCE_MARGIN s, else this share of the time left): the request ends,
# forced, before its timeout instead of outliving it.
FORCE_MARGIN = 2.0
FORCE_SHARE = 0.4


def shutdown(ctx: Context, job: Job) -> Result:
    """ACPI shutdown, powered off when the guest ignores it; all within the deadline."""
    maximum = ctx.config.queue.request_timeout
    default = min(ctx.config.queue.shutdown_timeout, maximum)
    timeout = int_arg(job.args, "timeout", 1, maximum, default)
    assert timeout is not None
    machine = _load(ctx, job)
    guest = _guest(ctx, machine)
    forced = False
    if guest.state() in ("running", "paused"):
        left = job.remaining()
        wait = min(float(timeout), max(0.0, left - max(FORCE_MARGIN, left * FORCE_SHARE)))
        if not guest.shutdown(wait):
            guest.force_shutdown()
            forced = True
    return {"state": _record(ctx, machine.id, guest), "forced": forced}


def _power(ctx: Context, job: Job, action: Callable[[Guest], None],
           running: str | None = None) -> Result:
    """Run one power action on the request's machine and record its new state.

    ``running`` names the action when the machine must be running for it.
    """
    machine = _load(ctx, job)
    guest = _guest(ctx, machine)
    if running:
        _need_running(guest, running)
    action(guest)
    return {"state": _record(ctx, machine.id, guest)}


def force_shutdown(ctx: Context, job: Job) -> Result:
    return _power(ctx, job, Guest.force_shutdown)


def reboot(ctx: Context, job: Job) -> Result:
    return _power(ctx, job, Guest.reboot, running="reboot")


def hibernate(ctx: Context, job: Job) -> Result:
    """Managed save, aborted (and the machine left running) when the deadline comes."""
    if _load(ctx, job).volatile:
        raise RequestError("a volatile desktop cannot hibernate: shut it down instead "
                           "(its changes are discarded)")
    return _power(ctx, job, lambda g: g.hibernate(timeout=job.remaining()),
                  running="hibernate")


def resume(ctx: Context, job: Job) -> Result:
    machine = _load(ctx, job)
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is a base: clone it, or remove_base first")
    guest = _guest(ctx, machine)
    guest.resume()
    return {"state": _record(ctx, machine.id, guest)}


def remove(ctx: Context, job: Job) -> Result:
    machine = _load(ctx, job)
    clones = _clone_count(ctx, machine.id)
    if clones:
        raise RequestError(f"machine {machine.name!r} is a base with {clones} clone(s): "
                           "remove them first")
    with ctx.db.session() as s:
        s.execute(update(Machine).where(Machine.id == machine.id).values(state="removing"))
    discard(ctx, machine.name, machine.id)
    files.remove_private(ctx.screenshot_dir, f"{machine.id}.png")
    return {}


def screenshot(ctx: Context, job: Job) -> Result:
    machine = _load(ctx, job)
    guest = _guest(ctx, machine)
    _need_running(guest, "take a screenshot of")
    png = guest.screenshot()
    path = files.write_private(ctx.screenshot_dir, f"{machine.id}.png", png)
    return {"path": str(path)}


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
}

# Safe to run again after a backend died in the middle of them (see recovery).
RETRYABLE = frozenset({"start", "shutdown", "force_shutdown", "hibernate", "resume",
                       "open_display", "refresh", "screenshot", "remove", "close_user"})
