"""Steps the request handlers share: rows, guests, state records, new domains, display access.

Each step reads the database, acts on libvirt or iptables, then writes: no libvirt or
iptables call runs inside a write transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from ravada import display as rdisplay
from ravada import hardware
from ravada.back import access, timers
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.machines import discard, forget_access, get_machine
from ravada.db import Machine, Request, User
from ravada.virt import Guest, GuestNotFound, NotRunning, VolumeExists, render_domain

Result = dict[str, Any]


def user_in(s: Session, user_id: Any) -> User:
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise RequestError(f"bad user_id {user_id!r}: an integer")
    user = s.get(User, user_id)
    if user is None:
        raise RequestError(f"user {user_id} does not exist")
    return user


def find_user(ctx: Context, user_id: Any) -> User:
    with ctx.db.sessionmaker() as s:
        return user_in(s, user_id)


def load(ctx: Context, job: Job) -> Machine:
    with ctx.db.session() as s:
        return get_machine(s, job.machine_id)


def guest_of(ctx: Context, machine: Machine) -> Guest:
    try:
        return ctx.host.guest(machine.name)
    except GuestNotFound:
        raise RequestError(f"machine {machine.name!r} has no libvirt domain") from None


def record(ctx: Context, machine_id: int, guest: Guest, domain_uuid: str | None = None) -> str:
    """Write the guest's state (and display, or closed access) to the row; return state.

    Read libvirt, act on iptables, then write: no libvirt or iptables call inside the
    write transaction (it would hold the database's write lock for as long as they take).
    ``domain_uuid``: a new machine's domain, written in the same transaction.
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
        if domain_uuid is not None:
            machine.domain_uuid = domain_uuid
        if state == "running":
            machine.display = display
        elif state != "paused":
            forget_access(s, machine)
            machine.guest_info = None  # the agent's report ends with the guest
        timers.on_state(s, machine, before)  # deadlines now; a volatile's removal: events
        hardware.on_state(machine, before)
    return state


def need_running(guest: Guest, what: str) -> None:
    state = guest.state()
    if state != "running":
        raise RequestError(f"cannot {what} {guest.name!r}: it is {state}, not running")


def new_machine(ctx: Context, job: Job, **fields: Any) -> int:
    """Insert the row in state ``creating``; a taken name is a clear error."""
    try:
        with ctx.db.session() as s:
            machine = Machine(state="creating", node_id=ctx.node_id, **fields)
            s.add(machine)
            s.flush()
            machine_id = machine.id
            # in the same transaction: a kill right after it still leaves recovery the id
            s.execute(update(Request).where(Request.id == job.id)
                      .values(result={"machine_id": machine_id}))
    except IntegrityError:
        raise RequestError(f"a machine named {fields['name']!r} already exists") from None
    return machine_id


def domain_xml(ctx: Context, name: str, memory_mb: int, vcpus: int, disks: list[str],
         iso: str | None, uuid: str | None = None,
         password: tuple[str, datetime] | None = None,
         hardware: dict[str, Any] | None = None) -> str:
    """The definition of a machine; ``hardware``: the row's switches (ravada.hardware)."""
    try:
        return render_domain(name, memory_mb, vcpus, disks, iso, ctx.config.display.listen,
                             domain_type=ctx.host.domain_type, uuid=uuid,
                             spice_tls=ctx.config.display.spice_tls,
                             password=password[0] if password else None,
                             password_valid_to=password[1] if password else None,
                             hardware=hardware)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def define_new(ctx: Context, name: str, machine_id: int, make_disks: Callable[[], list[str]],
                memory_mb: int, vcpus: int, iso: str | None,
                password: tuple[str, datetime] | None = None,
                state: str | None = "shutdown",
                hardware: dict[str, Any] | None = None) -> Guest:
    """Make the disks and the domain of a new machine row; on any failure remove all of it.

    ``password``: (password, valid until) of the display when it starts (see ``clone``).
    A volume that already had the name (:class:`VolumeExists`) is not ours: only the row
    goes. ``state``: the row's state once defined (shut off; ``creating`` for a pool clone
    that boots next, so the pool keeper does not take it for a stopped one to start);
    None: the row stays ``creating`` and the caller writes the domain's uuid and the state
    in its next transaction (a click's clone: :func:`open_access` with ``domain_uuid``).
    """
    try:
        disks = make_disks()
    except VolumeExists as exc:
        with ctx.db.session() as s:
            s.execute(delete(Machine).where(Machine.id == machine_id))
        raise RequestError(f"a libvirt volume named {name!r} already exists ({exc})") from None
    except BaseException:
        discard(ctx, name, machine_id)
        raise
    try:
        guest = ctx.host.define(domain_xml(ctx, name, memory_mb, vcpus, disks, iso,
                                     password=password, hardware=hardware))
        if state is not None:
            with ctx.db.session() as s:  # a domain just defined is shut off
                s.execute(update(Machine).where(Machine.id == machine_id)
                          .values(domain_uuid=guest.uuid, state=state))
    except BaseException:
        discard(ctx, name, machine_id)
        raise
    return guest


def open_access(ctx: Context, machine: Machine, disp: dict[str, Any], client_ip: str,
                 password: str, expires: datetime, user_id: int | None = None,
                 console: bool = False, fresh: bool = False,
                 domain_uuid: str | None = None,
                 end: tuple[Job, Result] | None = None) -> Result:
    """The viewer's ports opened to ``client_ip`` (not for the browser console, which
    reaches VNC through rvd_console on loopback), then ONE transaction: the viewers' rows,
    the state and display, the machine's deadlines (the row read with its base, which
    the deadlines need, in one SELECT); and the connection info of the (already set)
    ``password``. ``fresh``: the machine was made by this request (no viewers to read);
    ``domain_uuid``: its domain, written in the same transaction (see :func:`define_new`).
    ``end``: (job, result): the request ends ``done`` with ``result`` plus this display in
    the same transaction (:meth:`Job.end_in`)."""
    ports = access.viewer_ports(ctx, disp)
    if not ports and not (console and disp.get("vnc")):
        raise RequestError(f"machine {machine.name!r} has no display ports")
    viewers = None if console else access.allow(ctx, machine, ports, client_ip, user_id,
                                                fresh=fresh)
    shown = ctx.config.display
    info = rdisplay.connection_info(machine.name, disp, ctx.public_host, password, expires,
                                    shown.spice_host_subject if shown.spice_tls else None)
    with ctx.db.session() as s:
        if viewers is not None:
            access.write_rows(s, machine.id, ports, viewers, fresh=fresh)
        row = s.get(Machine, machine.id, options=[joinedload(Machine.base)])
        if row is not None:
            before, row.state, row.display = row.state, "running", disp
            if domain_uuid is not None:
                row.domain_uuid = domain_uuid
            timers.on_state(s, row, before)  # a clone that just started: its deadlines
            hardware.on_state(row, before)
        if end is not None:
            job, result = end
            job.end_in(s, {**result, "display": info})
    return info


def open_display_for(ctx: Context, machine: Machine | int, client_ip: str,
                     user_id: int | None = None, console: bool = False) -> Result:
    """Fresh one-time password, the firewall opened to ``client_ip``, display info.

    ``machine``: its row when the caller has it (a pool hand-out), else its id.
    ``console``: for the browser console, which reaches VNC through rvd_console on
    loopback: only the password changes, no port is opened to the viewer.
    libvirt sees one lookup, one read of the live XML and the password updates: the
    state check is the live XML's (a machine that is not running has no domain id).
    """
    if not isinstance(machine, Machine):
        with ctx.db.sessionmaker() as s:
            machine = get_machine(s, machine)
    guest = guest_of(ctx, machine)
    password = rdisplay.new_password()
    expires = rdisplay.valid_until(ctx.config.display.password_lifetime)
    try:
        disp = guest.set_display_password(password, expires)  # ports from the same live XML
    except NotRunning:
        raise RequestError(f"cannot open the display of {machine.name!r}: it is "
                           f"{guest.state()}, not running") from None
    return open_access(ctx, machine, disp, client_ip, password, expires, user_id, console)


def start_machine(ctx: Context, machine: Machine, client_ip: str | None,
           user_id: int | None = None) -> Result:
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is a base: clone it, or remove_base first")
    guest = guest_of(ctx, machine)
    guest.start()
    record(ctx, machine.id, guest)
    if client_ip:
        return open_display_for(ctx, machine.id, client_ip, user_id)
    return {"state": guest.state()}
