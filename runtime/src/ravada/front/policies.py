"""Base policies for administrators (the rules are in ``ravada.policy``) and the notices
a user's desktop card shows."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ravada import policy as rpolicy
from ravada import queue
from ravada.db import Machine, utcnow
from ravada.front.dbutil import write_session
from ravada.front.errors import Conflict, Forbidden, Invalid
from ravada.front.i18n import say
from ravada.front.machines import visible_machine
from ravada.front.state import FrontState, Viewer, iso_time


def of(base: Machine) -> rpolicy.Policy:
    return rpolicy.Policy(
        volatile=bool(base.volatile), pool_size=base.pool_size or 0,
        pool_started=base.pool_started or 0, run_timeout=base.run_timeout or 0,
        shutdown_disconnected=bool(base.shutdown_disconnected),
        shutdown_grace=base.shutdown_grace or 300)


def _base(s: Session, viewer: Viewer, base_id: int) -> Machine:
    if not viewer.is_admin:
        raise Forbidden(_("administrators only"))
    m = visible_machine(s, viewer, base_id)
    if not m.is_base:
        raise Conflict(_("%(name)s is not a base; prepare it first", name=m.name))
    return m


def get(s: Session, viewer: Viewer, base_id: int) -> dict[str, Any]:
    return of(_base(s, viewer, base_id)).as_dict()


def update(fs: FrontState, viewer: Viewer, base_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Validate and store a policy change; the backend's pool keeper is woken for it."""
    with write_session(fs.db) as s:
        base = _base(s, viewer, base_id)
        try:
            new = rpolicy.check_policy(of(base), changes)
        except rpolicy.PolicyError as exc:
            raise Invalid(say(exc)) from None
        for key, value in new.as_dict().items():
            setattr(base, key, value)
        s.flush()
    queue.notify(fs.config.queue.socket)
    return new.as_dict()


def desktop(base: Machine, clone: Machine | None) -> dict[str, Any]:
    """What the user's card says about a base's policy and their clone's deadlines."""
    pol = of(base)
    running = clone is not None and clone.state in ("running", "paused")
    now = utcnow()
    out: dict[str, Any] = {
        "volatile": pol.volatile,
        "notices": rpolicy.notices(
            pol, running=running, connected=bool(clone and clone.clients),
            run_until=clone.run_until if clone else None,
            idle_until=clone.idle_until if clone else None, now=now),
    }
    if clone is not None:
        out.update(connected=bool(clone.clients),
                   last_connected_at=iso_time(clone.last_connected_at),
                   run_until=iso_time(clone.run_until), idle_until=iso_time(clone.idle_until),
                   run_seconds_left=rpolicy.seconds_left(clone.run_until, now),
                   idle_seconds_left=rpolicy.seconds_left(clone.idle_until, now))
    return out
