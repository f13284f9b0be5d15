"""The requests log: rows with their user and machine names, filtered by what an admin asks.

Filters (all optional, from the query string): ``user`` (name), ``machine`` (name or id),
``command``, ``status``, ``since`` / ``until`` (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``, UTC).
A bad filter is a 400 naming it, never an empty list that looks like "nothing happened".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from ravada import queue
from ravada.db import Machine, Request, User
from ravada.front.errors import Invalid
from ravada.front.machines import request_json
from ravada.front.state import Viewer

STATUSES = (queue.REQUESTED, queue.WORKING, queue.DONE, queue.FAILED)
LIMIT = 200
FIELDS = ("user", "machine", "command", "status", "since", "until")


def _time(value: str, name: str, end: bool) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            t = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if end and fmt == "%Y-%m-%d":
            t += timedelta(days=1)  # "until 2026-12-01" takes in that whole day
        return t
    raise Invalid(_("%(name)s: a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM (UTC), not "
                    "%(value)s", name=name, value=repr(value)))


def filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The checked filters of a query string (unknown keys are ignored)."""
    out: dict[str, Any] = {}
    for key in FIELDS:
        value = (args.get(key) or "").strip()
        if not value:
            continue
        if len(value) > 64:
            raise Invalid(_("%(key)s: at most 64 characters", key=key))
        if key == "status" and value not in STATUSES:
            raise Invalid(_("status: one of %(value)s", value=', '.join(STATUSES)))
        if key in ("since", "until"):
            out[key] = _time(value, key, end=key == "until")
            out[key + "_text"] = value
        else:
            out[key] = value
    return out


def search(s: Session, viewer: Viewer, f: dict[str, Any],
           limit: int = LIMIT) -> list[dict[str, Any]]:
    """Newest first: each request with ``user`` and ``machine`` names (one query)."""
    who, what = aliased(User), aliased(Machine)
    q = (select(Request, who.name, what.name)
         .outerjoin(who, who.id == Request.user_id)
         .outerjoin(what, what.id == Request.machine_id))
    if not viewer.is_admin:
        q = q.where(Request.user_id == viewer.id)
    if "user" in f:
        q = q.where(who.name == f["user"])
    if "machine" in f:
        m = f["machine"]
        q = q.where(Request.machine_id == int(m) if m.isdigit() else what.name == m)
    if "command" in f:
        q = q.where(Request.command == f["command"])
    if "status" in f:
        q = q.where(Request.status == f["status"])
    if "since" in f:
        q = q.where(Request.created_at >= f["since"])
    if "until" in f:
        q = q.where(Request.created_at < f["until"])
    rows = s.execute(q.order_by(Request.id.desc()).limit(limit)).all()
    return [{**request_json(r, viewer), "user": u, "machine": m} for r, u, m in rows]
