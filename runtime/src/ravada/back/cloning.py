"""The clone handler: a user's desktop of a base (their own, a pool clone, or a new one)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ravada import display as rdisplay
from ravada import hardware
from ravada.back import basecopy, desktops, limits, pool
from ravada.back.args import bool_arg, client_ip_arg
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.machines import clone_name, discard, get_machine
from ravada.back.steps import (
    Result,
    define_new,
    guest_of,
    new_machine,
    open_access,
    open_display_for,
    record,
    start_machine,
    user_in,
)
from ravada.db import Machine
from ravada.firewall import FirewallError
from ravada.virt import Guest, VirtError

log = logging.getLogger(__name__)


def _base_disks(ctx: Context, base: Machine) -> list[str]:
    """The base image here: the base's own disk on its node, the copied volume elsewhere."""
    if base.node_id is None or ctx.node_id is None or base.node_id == ctx.node_id:
        return guest_of(ctx, base).disk_paths()
    own = f"/{basecopy.base_volume_name(base.name)}"
    found = [p for p in ctx.storage.volumes_named(f"{base.name}.base") if p.endswith(own)]
    if not found:
        raise RequestError(f"base {base.name!r} is not copied to this node yet")
    return found


def _make_clone(ctx: Context, job: Job, base: Machine, name: str,
                password: tuple[str, datetime] | None = None, defined: str | None = "shutdown",
                **fields: Any) -> tuple[int, Guest]:
    """A new overlay clone of ``base`` (row, volume, domain; all removed on failure).

    ``password``: the display's one-time password and expiry, defined with the domain so
    that starting it for a viewer needs no live device update. The overlay refuses a name
    whose volumes exist in the same storage-pool call that makes it (one pool lookup)."""
    base_disks = _base_disks(ctx, base)
    if not base_disks:
        raise RequestError(f"base {base.name!r} has no disk")
    if ctx.host.has_guest(name):
        raise RequestError(f"a libvirt domain named {name!r} already exists")
    machine_id = new_machine(ctx, job, name=name, base_id=base.id, memory_mb=base.memory_mb,
                              vcpus=base.vcpus, disk_gb=base.disk_gb,
                              volatile=bool(base.volatile),
                              hardware=hardware.options(base.hardware), **fields)
    guest = define_new(ctx, name, machine_id,
                        lambda: [ctx.storage.create_overlay(name, base_disks[0], fresh=True)],
                        base.memory_mb, base.vcpus, None, password=password, state=defined,
                        hardware=base.hardware)
    return machine_id, guest


def _settle(ctx: Context, machine_id: int, guest: Guest) -> None:
    """A click's clone whose start or display failed: its row leaves ``creating`` with
    its domain and libvirt's state, as a clone defined apart would have (best effort: the
    request reports the first error)."""
    try:
        record(ctx, machine_id, guest, domain_uuid=guest.uuid)
    except Exception as exc:
        log.warning("clone %s: state not recorded after a failure: %s", guest.name, exc)


def _pool_clone(ctx: Context, job: Job, base: Machine) -> Result:
    """The pool keeper's refill: one unassigned clone, started when asked.

    One that boots stays ``creating`` until it runs (a boot takes seconds on a loaded host:
    the keeper counts it as being made, never as a stopped clone to start); a boot that
    fails removes it, the keeper makes another."""
    start = bool_arg(job.args, "start")
    with pool.new_name(ctx, base.name) as name:
        machine_id, guest = _make_clone(ctx, job, base, name, owner_id=None, is_pool=True,
                                        defined="creating" if start else "shutdown")
    if start:
        try:
            guest.start()
        except BaseException:
            discard(ctx, name, machine_id)
            raise
        record(ctx, machine_id, guest)
    return {"machine_id": machine_id, "pool": True}


def clone(ctx: Context, job: Job) -> Result:
    """A user's desktop of a base: theirs if they have one, a pool clone, or a new clone.

    One desktop per user per base: clicks racing in this backend join the one making it
    (``desktops.making``); another backend's insert hits the unique constraint.
    A new clone that starts for a viewer is defined with its one-time display password in
    the domain XML, so the click makes no live device update; its ports come from one read
    of the live XML, and its viewers' rows, state and display are written in one
    transaction, without reading back the row it made.
    """
    args = job.args
    with ctx.db.sessionmaker() as s:  # reads only: the base, and the user
        base = get_machine(s, job.machine_id)
        if not base.is_base:
            raise RequestError(f"machine {base.name!r} is not a base: prepare_base first")
        user = None if args.get("pool") is True else user_in(s, args.get("user_id",
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
        taken: Machine | None = None
        if existing is not None:
            machine_id = existing.id
        else:
            taken = pool.take(ctx, base, user.id) if base.pool_size else None
            if taken is not None:
                machine_id = taken.id
            else:
                with ctx.db.sessionmaker() as s:
                    name = clone_name(s, base.name, user.name)
                if client_ip:
                    password = (rdisplay.new_password(),
                                rdisplay.valid_until(ctx.config.display.password_lifetime))
                try:  # a click's clone stays `creating` until its display is open
                    machine_id, fresh = _make_clone(ctx, job, base, name, password=password,
                                                    owner_id=user.id,
                                                    defined=None if password else "shutdown")
                except RequestError as exc:
                    if desktops.has_clone(ctx, base.id, user.id):
                        raise RequestError(f"you already have a desktop of {base.name!r} "
                                           "(made by another request): click again") from exc
                    raise
        if fresh is not None and (start or client_ip):
            try:
                fresh.start()  # just defined: shut off
            except BaseException:
                if password is not None:
                    _settle(ctx, machine_id, fresh)
                raise
            if password is None:
                record(ctx, machine_id, fresh)
            # else: open_access below writes the domain, state and display's rows at once
        elif taken is not None and taken.state == "running":
            pass  # a running pool clone: its row is in hand, nothing to start
        elif start or client_ip:
            with ctx.db.sessionmaker() as s:
                machine = get_machine(s, machine_id)
            if machine.state not in ("running",):
                start_machine(ctx, machine, None)
                taken = None  # its row is stale now
        result: Result = {"machine_id": machine_id}
        if client_ip:  # still under the lock: joined clicks open the display one at a time
            try:
                if fresh is not None and password is not None:
                    # the row this request made: its id and name are all open_access uses
                    made = Machine(id=machine_id, name=fresh.name)
                    try:
                        result["display"] = open_access(ctx, made, fresh.display(), client_ip,
                                                         *password, user.id, fresh=True,
                                                         domain_uuid=fresh.uuid,
                                                         end=(job, dict(result)))
                    except BaseException:
                        _settle(ctx, machine_id, fresh)
                        raise
                else:
                    result["display"] = open_display_for(ctx, taken or machine_id, client_ip,
                                                         user.id)
            except (RequestError, VirtError, FirewallError) as exc:
                with ctx.db.sessionmaker() as s:
                    name = get_machine(s, machine_id).name
                raise RequestError(f"machine {name!r} is ready and started, but its "
                                   f"display could not be opened: {exc}") from None
    return result
