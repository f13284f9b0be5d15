"""The admin machine page: its data, the actions that apply, hardware and description changes.

Hardware changes go to rvd_back as a ``hardware`` request (the front never calls libvirt);
what the backend would refuse is refused here first with the same words
(:mod:`ravada.hardware`), so the admin reads the reason at once instead of in a failed request.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from ravada import hardware, queue
from ravada.db import ConsoleSession, FirewallRule, Machine, Request, User
from ravada.front import machines, validate
from ravada.front.dbutil import write_session
from ravada.front.errors import Conflict, Forbidden, Invalid
from ravada.front.i18n import say, state_label
from ravada.front.state import FrontState, Viewer, iso_time

DESCRIPTION_MAX = 10_000
DESTRUCTIVE = ("remove", "remove_base", "force_shutdown")


def actions_for(m: dict[str, Any], clones: int = 0) -> list[str]:
    """The actions that apply to a machine in its current state (its ``machine_json``)."""
    out = []
    for action in machines.USER_ACTIONS + machines.ADMIN_ACTIONS:
        allowed = machines.ACTION_STATES.get(action)
        if allowed is not None and m["state"] not in allowed:
            continue
        if m["is_base"] and action in ("start", "hibernate", "prepare_base", "reboot"):
            continue
        if action == "prepare_base" and m["base_id"] is not None:
            continue  # a clone cannot become a base
        if action == "remove_base" and not m["is_base"]:
            continue
        if action in ("remove", "remove_base") and clones:
            continue
        out.append(action)
    return out


def _disks(m: Machine) -> list[dict[str, Any]]:
    disks = (m.hardware or {}).get("disks")
    if isinstance(disks, list) and disks:
        return disks
    return [{"dev": "vda", "gb": m.disk_gb}] if m.disk_gb else []


def page(fs: FrontState, viewer: Viewer, machine_id: int) -> dict[str, Any]:
    """Everything the machine page shows, read in one session."""
    if not viewer.is_admin:
        raise Forbidden(_("the machine page is for administrators"))
    with fs.db.sessionmaker() as s:
        m = machines.visible_machine(s, viewer, machine_id)
        owner = s.get(User, m.owner_id) if m.owner_id else None
        base = s.get(Machine, m.base_id) if m.base_id else None
        clones = s.execute(select(Machine.id, Machine.name, Machine.state)
                           .where(Machine.base_id == m.id).order_by(Machine.name)).all()
        viewers = s.execute(select(FirewallRule.client_ip, User.name)
                            .outerjoin(User, User.id == FirewallRule.user_id)
                            .where(FirewallRule.machine_id == m.id)
                            .group_by(FirewallRule.client_ip, User.name)).all()
        consoles = s.scalar(select(func.count()).select_from(ConsoleSession).where(
            ConsoleSession.machine_id == m.id, ConsoleSession.ended_at.is_(None))) or 0
        recent = [machines.request_json(r, viewer) for r in s.scalars(
            select(Request).where(Request.machine_id == m.id)
            .order_by(Request.id.desc()).limit(8))]
        data = machines.machine_json(m, owner.name if owner else None)
        data.update({
            "hardware": hardware.options(m.hardware),
            "next_start": (m.hardware or {}).get("next_start") or {},
            "disks": _disks(m), "display": m.display or {},
            "last_started_at": iso_time(m.last_started_at),
            "updated_at": iso_time(m.updated_at),
        })
    return {
        "m": data, "owner": owner.name if owner else None,
        "next_start": data["next_start"], "disks": data["disks"],
        "base": {"id": base.id, "name": base.name} if base else None,
        "clones": [{"id": i, "name": n, "state": st} for i, n, st in clones],
        "viewers": [{"ip": ip, "user": u} for ip, u in viewers], "consoles": consoles,
        "clients": m.clients, "requests": recent,
        "actions": actions_for(data, len(clones)), "destructive": DESTRUCTIVE,
        "refusal": hardware.base_refusal(m.name, len(clones)) if m.is_base else None,
        "pending": any(r["status"] in machines.PENDING for r in recent),
    }


def fingerprint(fs: FrontState, machine_id: int) -> str:
    """What changes when the page would: the row's update time and its latest request."""
    with fs.db.sessionmaker() as s:
        row = s.execute(select(Machine.updated_at, Machine.state, Machine.clients)
                        .where(Machine.id == machine_id)).first()
        req = s.execute(select(Request.id, Request.status).where(
            Request.machine_id == machine_id).order_by(Request.id.desc()).limit(1)).first()
    return repr((tuple(row) if row else None, tuple(req) if req else None))


def _clone_count(s: Any, machine_id: int) -> int:
    return s.scalar(select(func.count()).select_from(Machine)
                    .where(Machine.base_id == machine_id)) or 0


def hardware_json(fs: FrontState, viewer: Viewer, machine_id: int) -> dict[str, Any]:
    """A machine's hardware as the API shows it: what it has, what waits for its next
    start, and why a change would be refused (a base with clones) before one is tried."""
    if not viewer.is_admin:
        raise Forbidden("only administrators see a machine's hardware settings")
    with fs.db.sessionmaker() as s:
        m = machines.visible_machine(s, viewer, machine_id)
        refusal = hardware.base_refusal(m.name, _clone_count(s, m.id)) if m.is_base else None
        return {"machine_id": m.id, "state": m.state, "memory_mb": m.memory_mb,
                "vcpus": m.vcpus, "iso": m.iso, "disks": _disks(m),
                **hardware.options(m.hardware),
                "next_start": (m.hardware or {}).get("next_start") or {},
                "changeable": m.state in hardware.CHANGEABLE and m.state != "hibernated"
                and refusal is None, "refusal": refusal}


def _switch(form: dict[str, Any], key: str) -> bool:
    return form.get(key) in ("on", "true", "1", True)


def change_from_form(form: dict[str, Any], section: str) -> dict[str, Any]:
    """The hardware change one form of the page asks for (``section`` names the form)."""
    if section == "size":
        return {"memory_mb": form.get("memory_mb", ""), "vcpus": form.get("vcpus", "")}
    if section == "devices":
        return {k: _switch(form, k) for k in hardware.SWITCHES}
    if section == "iso":
        return {"iso": form.get("iso") or None}
    if section == "add_disk":
        return {"add_disk_gb": form.get("add_disk_gb", "")}
    if section == "grow_disk":
        return {"grow_disk": {"dev": form.get("dev"), "gb": form.get("gb", "")}}
    raise Invalid(_("no hardware form %(section)s", section=repr(section)))


def submit_hardware(fs: FrontState, viewer: Viewer, machine_id: int,
                    change: dict[str, Any]) -> int:
    """Check a hardware change as the backend would, then queue it; the request id."""
    if not viewer.is_admin:
        raise Forbidden(_("only administrators change a machine's hardware"))
    with fs.db.sessionmaker() as s:
        m = machines.visible_machine(s, viewer, machine_id)
        try:
            checked = hardware.check_change(change, hardware.options(m.hardware))
        except hardware.HardwareError as exc:
            raise Invalid(say(exc), extra={"field": exc.field}) from None
        if m.state not in hardware.CHANGEABLE:
            raise Conflict(_("cannot change the hardware of %(name)s while it is %(state)s",
                             name=m.name, state=state_label(m.state)),
                           extra={"reason": "state", "state": m.state})
        if m.state == "hibernated":
            raise Conflict(_("%(name)s is hibernated: its saved memory needs the same "
                             "hardware; resume it and shut it down first", name=m.name),
                           extra={"reason": "state", "state": m.state})
        if m.is_base:
            clones = _clone_count(s, m.id)
            refusal = hardware.base_refusal(m.name, clones)
            if refusal:
                raise Conflict(say(refusal),
                               extra={"reason": "base_has_clones", "clones": clones})
        if checked.get("iso") and checked["iso"] not in machines.list_isos(fs):
            raise Invalid(_("iso: no ISO named %(iso)s in %(iso_dir)s",
                            iso=repr(checked['iso']), iso_dir=fs.config.front.iso_dir),
                          extra={"field": "iso"})
        busy = s.scalar(select(Request.id).where(
            Request.machine_id == m.id, Request.command == "hardware",
            Request.status.in_(machines.PENDING)))
        if busy:
            raise Conflict(_("a hardware change of %(name)s is already under way (request "
                             "%(busy)s)", name=m.name, busy=busy), extra={"request_id": busy})
    return machines.submit(fs, "hardware", checked, machine_id=machine_id, user_id=viewer.id)


def set_description(fs: FrontState, viewer: Viewer, machine_id: int, text: Any) -> None:
    """The Markdown description users read on their desktop card."""
    if not viewer.is_admin:
        raise Forbidden(_("only administrators describe machines"))
    text = validate.text(text or "", "description", max_len=DESCRIPTION_MAX, min_len=0)
    with write_session(fs.db) as s:
        machines.visible_machine(s, viewer, machine_id).description = text.replace("\r\n", "\n")


def request_done(status: str) -> bool:
    return status in queue.FINAL
