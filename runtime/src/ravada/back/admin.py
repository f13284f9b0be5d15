"""What the admin CLI does to users, machines and the queue (no argparse here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import aliased

from ravada import queue
from ravada.auth import groups
from ravada.auth.totp import reset_audited
from ravada.config import Config
from ravada.db import Backend, Database, Machine, Node, Request, User, utcnow
from ravada.passwords import check_policy, hash_password

FRESH = timedelta(seconds=15)  # a backend whose heartbeat is older is not running


class AdminError(Exception):
    """A clear, user-facing failure of an admin command (exit status 1)."""


def _get_user(s, name: str) -> User:  # type: ignore[no-untyped-def]
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise AdminError(f"no user named {name!r}")
    return user


def add_user(db: Database, name: str, password: str, admin: bool = False) -> int:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise AdminError(f"bad user name {name!r}: 1-64 characters, no spaces")
    check_policy(password)
    with db.session() as s:
        if s.scalar(select(User.id).where(User.name == name)) is not None:
            raise AdminError(f"user {name!r} already exists")
        user = User(name=name, password_hash=hash_password(password), is_admin=admin)
        s.add(user)
        s.flush()
        return user.id


def set_password(db: Database, name: str, password: str) -> None:
    check_policy(password)
    with db.session() as s:
        _get_user(s, name).password_hash = hash_password(password)


def reset_totp(db: Database, name: str) -> bool:
    """Remove a user's second factor (the way back for an admin who lost phone and
    recovery codes); logged in the requests log like a reset from the admin pages."""
    with db.session() as s:
        return reset_audited(s, _get_user(s, name), None, "rvd_back --reset-totp")


def set_admin(db: Database, name: str, admin: bool) -> None:
    with db.session() as s:
        _get_user(s, name).is_admin = admin


def remove_user(db: Database, name: str) -> None:
    with db.session() as s:
        user = _get_user(s, name)
        owned = s.scalars(select(Machine.name).where(Machine.owner_id == user.id)).all()
        if owned:
            raise AdminError(f"user {name!r} still owns machines: {', '.join(owned)}; "
                             "remove them first")
        s.delete(user)


def groups_command(db: Database, add: str | None, add_to: list[str] | None,
                   remove_from: list[str] | None) -> str:
    """--add-group / --add-to-group / --remove-from-group / --list-groups: the line to print."""
    try:
        with db.session() as s:
            if add:
                g = groups.create_group(s, add)
                return f"created group {g.name}"
            if add_to or remove_from:
                group, user = add_to or remove_from or ["", ""]
                groups.set_member(s, group, user, bool(add_to))
                return f"{user} {'added to' if add_to else 'removed from'} {group}"
            rows = groups.list_groups(s)
    except groups.GroupError as exc:
        raise AdminError(str(exc)) from None
    head = ("GROUP", "SOURCE", "MEMBERS")
    body = [(g["name"], g["source"], ",".join(g["members"]) or "-") for g in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in (head, *body))


@dataclass
class MachineRow:
    id: int
    name: str
    state: str
    owner: str
    base: str
    is_base: bool
    node: str = "-"


def list_machines(db: Database) -> list[MachineRow]:
    base = aliased(Machine)
    with db.session() as s:
        rows = s.execute(
            select(Machine, User.name, base.name, Node.name)
            .outerjoin(User, User.id == Machine.owner_id)
            .outerjoin(base, base.id == Machine.base_id)
            .outerjoin(Node, Node.id == Machine.node_id)
            .order_by(Machine.name)).all()
        return [MachineRow(m.id, m.name, m.state, owner or "-", base_name or "-", m.is_base,
                           node or "-")
                for m, owner, base_name, node in rows]


def format_table(rows: list[MachineRow]) -> str:
    head = ("ID", "NAME", "STATE", "OWNER", "BASE", "IS_BASE", "NODE")
    body = [(str(r.id), r.name, r.state, r.owner, r.base, "yes" if r.is_base else "no",
             r.node) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in (head, *body))


def import_domain(config: Config, db: Database, name: str, owner: str | None) -> int:
    """Adopt the existing libvirt domain ``name`` as a machine."""
    from ravada.virt import GuestNotFound, Host

    with db.session() as s:
        if s.scalar(select(Machine.id).where(Machine.name == name)) is not None:
            raise AdminError(f"machine {name!r} is already managed by Ravada")
        owner_id = _get_user(s, owner).id if owner else None
    host = Host(config.libvirt.uri, config.libvirt.storage_pool)
    try:
        try:
            guest = host.guest(name)
        except GuestNotFound:
            raise AdminError(f"no libvirt domain named {name!r} on {config.libvirt.uri}") from None
        info = host.conn().lookupByName(name).info()  # [state, maxMem KiB, mem, vcpus, cpu]
        state = guest.state()
        display = guest.display() if state == "running" else None
        with db.session() as s:
            m = Machine(name=name, owner_id=owner_id, state=state, memory_mb=info[1] // 1024,
                        vcpus=info[3], domain_uuid=guest.uuid, display=display,
                        description="imported")
            s.add(m)
            s.flush()
            return m.id
    finally:
        host.close()


def backend_alive(db: Database) -> bool:
    with db.session() as s:
        newest = s.scalar(select(Backend.heartbeat_at).order_by(Backend.heartbeat_at.desc())
                          .limit(1))
    return newest is not None and newest >= utcnow() - FRESH


def require_backend(db: Database) -> None:
    if not backend_alive(db):
        raise AdminError("no rvd_back daemon is running (no heartbeat in the last "
                         f"{int(FRESH.total_seconds())} s): start it first")


def machines_for(db: Database, names: list[str], all_: bool, states: tuple[str, ...]
                 ) -> list[tuple[int, str]]:
    """(id, name) of the named machines, or of every machine in ``states`` with --all."""
    with db.session() as s:
        if all_:
            rows = s.execute(select(Machine.id, Machine.name)
                             .where(Machine.state.in_(states)).order_by(Machine.name)).all()
            return [(i, n) for i, n in rows]
        out = []
        for name in names:
            m = s.scalar(select(Machine).where(Machine.name == name))
            if m is None:
                raise AdminError(f"no machine named {name!r}")
            out.append((m.id, m.name))
        return out


def run_requests(config: Config, db: Database, command: str, machines: list[tuple[int, str]],
                 timeout: float) -> list[tuple[str, Request]]:
    """Queue ``command`` for each machine, wake rvd_back, wait for all; (name, request)."""
    require_backend(db)
    with db.session() as s:
        ids = [(name, queue.enqueue(s, command, machine_id=mid).id) for mid, name in machines]
    queue.notify(config.queue.socket)
    deadline = time.monotonic() + timeout
    return [(name, queue.wait_for(db, rid, max(0.0, deadline - time.monotonic())))
            for name, rid in ids]


def add_base(config: Config, db: Database, image: str, name: str, description: str,
             memory_mb: int, vcpus: int, public: bool, timeout: float) -> tuple[int, bool]:
    """A prepared base ``name`` from the pool's disk image ``image`` (``<x>.image.qcow2``).

    Idempotent: an existing base of that name only gets ``description`` and ``public``
    set. Runs ``create`` (an overlay on the image) then ``prepare_base`` through the queue,
    so rvd_back must be running. Returns (machine id, whether anything was made).
    """
    with db.session() as s:
        m = s.scalar(select(Machine).where(Machine.name == name))
        if m is not None:
            if not m.is_base:
                raise AdminError(f"machine {name!r} exists and is not a base")
            m.description, m.is_public = description, public
            return m.id, False
    args = {"name": name, "image": image, "memory_mb": memory_mb, "vcpus": vcpus}
    for command in ("create", "prepare_base"):
        require_backend(db)
        with db.session() as s:
            machine_id = s.scalar(select(Machine.id).where(Machine.name == name))
            rid = queue.enqueue(s, command, args if command == "create" else None,
                                machine_id=machine_id).id
        queue.notify(config.queue.socket)
        req = queue.wait_for(db, rid, timeout)
        if req.status != "done":
            raise AdminError(f"{command} {name}: {req.error or f'still {req.status}'}")
    with db.session() as s:
        m = s.scalar(select(Machine).where(Machine.name == name))
        if m is None:
            raise AdminError(f"machine {name!r} vanished while it was made a base")
        m.description, m.is_public = description, public
        return m.id, True
