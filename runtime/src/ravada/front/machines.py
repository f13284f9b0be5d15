"""Machines, bases and requests: what both the pages and the API do.

Displays and screenshots live in :mod:`ravada.front.displays`, the requests log's filters in
:mod:`ravada.front.requests_log`, the admin machine page in :mod:`ravada.front.machine_settings`.

Every function takes the viewer and checks what they may see or do; a machine
that is not the viewer's (and the viewer is no admin) is "not found".
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from ravada import limits, queue, waiters
from ravada.auth.groups import in_access_list, usable_bases
from ravada.db import Machine, Request, User
from ravada.front import display_requests, validate, waits
from ravada.front.dbutil import write_session
from ravada.front.errors import Conflict, Forbidden, Invalid, NotFound
from ravada.front.i18n import action_label, state_label
from ravada.front.state import FrontState, Viewer, iso_time

MAX_ID = 2**31 - 1
PENDING = (queue.REQUESTED, queue.WORKING)
USER_ACTIONS = ("start", "shutdown", "hibernate", "reboot", "resume", "force_shutdown", "remove")
ADMIN_ACTIONS = ("prepare_base", "remove_base")
# Machine states each action needs (None: any state).
ACTION_STATES: dict[str, tuple[str, ...] | None] = {
    "start": ("shutdown", "hibernated", "unknown"),
    "shutdown": ("running", "paused"),
    "hibernate": ("running",),
    "reboot": ("running",),
    "resume": ("paused",),
    "force_shutdown": ("running", "paused", "unknown"),
    "remove": ("shutdown", "running", "paused", "hibernated", "failed", "unknown"),
    "prepare_base": ("shutdown",),
    "remove_base": ("shutdown",),
}
DISPLAY_STATES = ("running", "paused")


# ---------------------------------------------------------------- views

def machine_json(m: Machine, owner: str | None = None) -> dict[str, Any]:
    return {
        "id": m.id, "name": m.name, "state": m.state, "owner_id": m.owner_id, "owner": owner,
        "base_id": m.base_id, "is_base": m.is_base, "is_public": m.is_public,
        "memory_mb": m.memory_mb, "vcpus": m.vcpus, "disk_gb": m.disk_gb, "iso": m.iso,
        "description": m.description, "created_at": iso_time(m.created_at),
        "volatile": bool(m.volatile), "is_pool": bool(m.is_pool),
        "connected": bool(m.clients), "last_connected_at": iso_time(m.last_connected_at),
        "run_until": iso_time(m.run_until), "idle_until": iso_time(m.idle_until),
        **({"policy": {"volatile": bool(m.volatile), "pool_size": m.pool_size,
                       "pool_started": m.pool_started, "run_timeout": m.run_timeout,
                       "shutdown_disconnected": bool(m.shutdown_disconnected),
                       "shutdown_grace": m.shutdown_grace}} if m.is_base else {}),
        "guest": m.guest_info or None,
    }


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if k == "password" else _redact(v)) for k, v in value.items()}
    return value


def request_json(r: Request, viewer: Viewer | None = None) -> dict[str, Any]:
    """A request row; display passwords are hidden from everyone but its submitter."""
    duration = None
    if r.finished_at is not None:
        duration = round((r.finished_at - r.created_at).total_seconds(), 3)
    result = r.result
    if viewer is not None and r.user_id != viewer.id:
        result = _redact(result)
    return {
        "id": r.id, "command": r.command, "status": r.status, "error": r.error,
        "result": result, "machine_id": r.machine_id, "user_id": r.user_id,
        "created_at": iso_time(r.created_at), "started_at": iso_time(r.started_at),
        "finished_at": iso_time(r.finished_at), "duration_s": duration,
    }


def machine_id_from(req: Request) -> int | None:
    """The machine a request is about: its own, or the clone a ``clone`` created."""
    if req.command == "clone":
        result = req.result if isinstance(req.result, dict) else {}
        mid = result.get("machine_id")
        return mid if isinstance(mid, int) else None
    return req.machine_id


# ---------------------------------------------------------------- lookups

def visible_machine(s: Session, viewer: Viewer, machine_id: int) -> Machine:
    """The machine when the viewer owns it or is an admin; else NotFound."""
    m = s.get(Machine, machine_id) if 0 < machine_id <= MAX_ID else None
    if m is None or (not viewer.is_admin and m.owner_id != viewer.id):
        raise NotFound(_("no machine %(machine_id)s", machine_id=machine_id))
    return m


def list_machines(s: Session, viewer: Viewer, mine: bool = False) -> list[dict[str, Any]]:
    """The viewer's machines (every machine for admins unless ``mine``), in id order.

    One query: the owner's name comes from a join, not a query per machine.
    """
    owner = aliased(User)
    q = select(Machine, owner.name).outerjoin(owner, Machine.owner_id == owner.id)
    if mine or not viewer.is_admin:
        q = q.where(Machine.owner_id == viewer.id)
    rows = s.execute(q.order_by(Machine.id)).all()
    return [machine_json(m, name) for m, name in rows]


def machine_tree(machines: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(machine, depth) in tree order: each base followed by its clones."""
    children: dict[int | None, list[dict[str, Any]]] = {}
    ids = {m["id"] for m in machines}
    for m in machines:
        parent = m["base_id"] if m["base_id"] in ids else None
        children.setdefault(parent, []).append(m)
    out: list[tuple[dict[str, Any], int]] = []

    def walk(parent: int | None, depth: int) -> None:
        for m in children.get(parent, []):
            out.append((m, depth))
            if depth < 20:
                walk(m["id"], depth + 1)

    walk(None, 0)
    return out


def clone_counts(s: Session) -> dict[int, int]:
    """How many clones each base has (one query)."""
    return {base: n for base, n in s.execute(
        select(Machine.base_id, func.count()).where(Machine.base_id.is_not(None))
        .group_by(Machine.base_id))}


def pending_request(s: Session, command: str, machine_id: int, user_id: int) -> Request | None:
    return s.scalar(select(Request).where(
        Request.command == command, Request.machine_id == machine_id,
        Request.user_id == user_id, Request.status.in_(PENDING)).order_by(Request.id.desc()))


def list_bases(s: Session, viewer: Viewer) -> list[dict[str, Any]]:
    """Bases the viewer may use, with the viewer's own clone.

    Admins see every base; others the public ones whose access list is empty or
    names one of their groups (the same rule as :func:`start_base`). A few queries
    whatever the number of bases: the viewer's groups, the bases, the viewer's clones
    of them and the viewer's pending clone requests (no query per base).
    """
    from ravada.front import policies

    q = select(Machine).where(usable_bases(viewer.id, viewer.is_admin))
    bases = list(s.scalars(q.order_by(Machine.name)))
    if not bases:
        return []
    ids = [b.id for b in bases]
    clones: dict[int, Machine] = {}
    for m in s.scalars(select(Machine).where(Machine.owner_id == viewer.id,
                                             Machine.base_id.in_(ids)).order_by(Machine.id)):
        clones.setdefault(m.base_id, m)  # type: ignore[arg-type]
    pending: dict[int, int] = {}
    for rid, mid in s.execute(select(Request.id, Request.machine_id).where(
            Request.user_id == viewer.id, Request.command == "clone",
            Request.status.in_(PENDING), Request.machine_id.in_(ids))
            .order_by(Request.id.desc())):
        pending.setdefault(mid, rid)
    return [{
        "id": base.id, "name": base.name, "description": base.description,
        "is_public": base.is_public,
        "clone": machine_json(clones[base.id]) if base.id in clones else None,
        "pending_request": pending.get(base.id),
        **policies.desktop(base, clones.get(base.id)),
    } for base in bases]


# ---------------------------------------------------------------- requests

def submit(fs: FrontState, command: str, args: dict[str, Any], *, machine_id: int | None,
           user_id: int) -> int:
    """Queue a request and wake the backend and the live lists (a new row in the log)."""
    rid = queue.submit(fs.db, fs.config.queue.socket, command, args,
                       machine_id=machine_id, user_id=user_id)
    waiters.changed(fs.config.queue.socket)
    return rid


def get_request(fs: FrontState, viewer: Viewer, req_id: int, wait: float = 0.0) -> Request:
    """A request the viewer submitted (any for admins), after waiting up to ``wait`` s."""
    with fs.db.sessionmaker() as s:
        r = s.get(Request, req_id) if 0 < req_id <= MAX_ID else None
        if r is None or (not viewer.is_admin and r.user_id != viewer.id):
            raise NotFound(_("no request %(req_id)s", req_id=req_id))
        if r.status in queue.FINAL or wait <= 0:
            return r
    return waits.wait_for(fs, viewer, req_id, wait)


def list_requests(s: Session, viewer: Viewer, *, status: str | None = None,
                  command: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = select(Request)
    if not viewer.is_admin:
        q = q.where(Request.user_id == viewer.id)
    if status:
        q = q.where(Request.status == status)
    if command:
        q = q.where(Request.command == command)
    return [request_json(r, viewer) for r in s.scalars(q.order_by(Request.id.desc()).limit(limit))]


# ---------------------------------------------------------------- actions

def start_base(fs: FrontState, viewer: Viewer, base_id: int, client_ip: str) -> dict[str, Any]:
    """The user's "Start" on a base: clone it, or start/open the clone they have.

    A click while the same request is still pending returns that request again.
    """
    with fs.db.sessionmaker() as s:
        base = s.scalar(select(Machine).where(
            Machine.id == base_id, usable_bases(viewer.id, viewer.is_admin))
        ) if 0 < base_id <= MAX_ID else None
        if base is None:
            raise NotFound(_("no base %(base_id)s", base_id=base_id))
        clone = s.scalar(select(Machine).where(Machine.base_id == base.id,
                                               Machine.owner_id == viewer.id).order_by(Machine.id))
        if clone is None:
            pending = pending_request(s, "clone", base.id, viewer.id)
            if pending:
                return {"request_id": pending.id, "command": "clone", "machine_id": None}
            command, target = "clone", base.id
            args: dict[str, Any] = {"user_id": viewer.id, "start": True, "client_ip": client_ip}
        else:
            if clone.state in ("creating", "removing", "failed"):
                raise Conflict(_("your desktop %(name)s is %(state)s",
                                 name=clone.name, state=state_label(clone.state)))
            command = {"running": "open_display", "paused": "resume"}.get(clone.state, "start")
            if command == "open_display":
                display_requests.refuse_if_stopping(s, clone.id, clone.name)
            pending = pending_request(s, command, clone.id, viewer.id)
            if pending:
                return {"request_id": pending.id, "command": command, "machine_id": clone.id}
            target = clone.id
            args = {} if command == "resume" else {"client_ip": client_ip}
    rid = submit(fs, command, args, machine_id=target, user_id=viewer.id)
    return {"request_id": rid, "command": command,
            "machine_id": None if command == "clone" else target}


def machine_action(fs: FrontState, viewer: Viewer, machine_id: int, action: str,
                   client_ip: str = "", timeout: int | None = None) -> int:
    """Submit ``action`` for a machine the viewer may act on; returns the request id."""
    if action not in USER_ACTIONS + ADMIN_ACTIONS:
        raise NotFound(_("no action %(action)s", action=action))
    if action in ADMIN_ACTIONS and not viewer.is_admin:
        raise Forbidden(_("%(action)s is for administrators", action=action))
    with fs.db.sessionmaker() as s:
        m = visible_machine(s, viewer, machine_id)
        if m.is_base and action in ("remove", "start") and not viewer.is_admin:
            raise Forbidden(_("%(action)s of a base is for administrators", action=action))
        if (action in ("start", "resume") and m.base_id is not None and not viewer.is_admin
                and not in_access_list(s, viewer.id, m.base_id)):
            raise Forbidden(_("%(name)s's base is no longer given to you", name=m.name))
        allowed = ACTION_STATES.get(action)
        if allowed is not None and m.state not in allowed:
            raise Conflict(_("cannot %(action)s %(name)s: it is %(state)s",
                             action=action_label(action).lower(), name=m.name,
                             state=state_label(m.state)))
        if action == "prepare_base" and m.is_base:
            raise Conflict(_("%(name)s is already a base", name=m.name))
        if action == "remove_base" and not m.is_base:
            raise Conflict(_("%(name)s is not a base", name=m.name))
        if action in ("remove", "remove_base"):
            clones = s.scalar(select(func.count()).select_from(Machine)
                              .where(Machine.base_id == m.id))
            if clones:
                raise Conflict(_("%(name)s has %(clones)s clone(s); remove them first",
                                 name=m.name, clones=clones))
        pending = pending_request(s, action, m.id, viewer.id)
        if pending:
            return pending.id
    args: dict[str, Any] = {}
    if action == "start" and client_ip:
        args["client_ip"] = client_ip
    if action == "shutdown" and timeout is not None:
        args["timeout"] = timeout
    return submit(fs, action, args, machine_id=machine_id, user_id=viewer.id)


def set_public(fs: FrontState, viewer: Viewer, machine_id: int, public: bool) -> dict[str, Any]:
    """Make a base public (listed for every user) or private: a direct flag change."""
    if not viewer.is_admin:
        raise Forbidden(_("only administrators publish bases"))
    with write_session(fs.db) as s:
        m = visible_machine(s, viewer, machine_id)
        if not m.is_base:
            raise Conflict(_("%(name)s is not a base; prepare it first", name=m.name))
        m.is_public = public
        s.flush()
        return machine_json(m)


def list_isos(fs: FrontState) -> list[str]:
    """ISO images of ``front.iso_dir`` a new machine may boot (verified when the library
    has a row for them; see ravada.front.isolib)."""
    from ravada.front import isolib

    return isolib.usable(fs)


def create_machine(fs: FrontState, viewer: Viewer, data: dict[str, Any]) -> int:
    """Admin: submit ``create`` from an ISO of iso_dir and/or a blank disk."""
    if not viewer.is_admin:
        raise Forbidden(_("only administrators create machines"))
    name = validate.machine_name(data.get("name"))
    iso = data.get("iso") or None
    if iso is not None:
        iso = validate.text(iso, "iso", max_len=255)
        if iso not in list_isos(fs):
            raise Invalid(_("iso: no ISO named %(iso)s in %(iso_dir)s",
                            iso=repr(iso), iso_dir=fs.config.front.iso_dir))
    args = {
        "name": name, "iso": iso,
        "memory_mb": validate.in_limits(data.get("memory_mb", 2048), "memory_mb",
                                        limits.MEMORY_MB),
        "vcpus": validate.in_limits(data.get("vcpus", 1), "vcpus", limits.VCPUS),
        "disk_gb": validate.in_limits(data.get("disk_gb", 10), "disk_gb", limits.DISK_GB),
        "owner_id": viewer.id,
    }
    with fs.db.sessionmaker() as s:
        if s.scalar(select(Machine.id).where(Machine.name == name)) is not None:
            raise Conflict(_("a machine named %(name)s already exists", name=name))
        pending = s.scalars(select(Request).where(
            Request.command == "create", Request.status.in_(PENDING))).all()
        if any((r.args or {}).get("name") == name for r in pending):
            raise Conflict(_("a machine named %(name)s is already being created", name=name))
    return submit(fs, "create", args, machine_id=None, user_id=viewer.id)
