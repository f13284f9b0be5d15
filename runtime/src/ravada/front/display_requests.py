"""Which ``open_display`` request a display view uses, and when it must not wait at all.

- A machine with a pending stop (shutdown, hibernate, remove...) is answered at once with
  409 "shutting down": its display request would only queue behind the stop.
- Reloading the display page (or the API call) does not queue one ``open_display`` per view:
  a pending one of the same viewer, machine and address is followed again, and one that
  ended in the last :data:`REUSE_SECONDS` (a third of the password's lifetime at most) is
  reused (same password, same opening), as long as nothing that changes the machine was
  requested since.
"""

from __future__ import annotations

from datetime import timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada import queue
from ravada.db import Request, utcnow
from ravada.front.errors import Conflict

REUSE_SECONDS = 10
# Pending commands that end the display, and what the user is told.
STOPPING = {"shutdown": "shutting down", "force_shutdown": "shutting down",
            "hibernate": "hibernating", "remove": "being removed",
            "prepare_base": "becoming a base", "remove_base": "being changed"}
# Commands that do not change what an open display shows.
HARMLESS = ("open_display", "screenshot", "refresh")


def refuse_if_stopping(s: Session, machine_id: int, name: str) -> None:
    """409 at once when a stop of the machine is queued or running."""
    stop = s.scalar(select(Request.command).where(
        Request.machine_id == machine_id, Request.command.in_(list(STOPPING)),
        queue.HOLDS_MACHINE | (Request.status == queue.REQUESTED)).limit(1))
    if stop is not None:
        raise Conflict(_("%(name)s is %(value)s; open its display when it has started again",
                         name=name, value=STOPPING[stop]),
                       extra={"state": STOPPING[stop].replace(" ", "_")})


def reusable(s: Session, machine_id: int, user_id: int, client_ip: str,
             password_lifetime: int, console: bool = False) -> int | None:
    """The id of an ``open_display`` this view may follow instead of queueing a new one.

    A finished one is reused only while most of its password's life is left, and only for
    the same purpose (a browser-console one opened no firewall port).
    """
    window = min(REUSE_SECONDS, password_lifetime / 3)
    last = s.scalar(select(Request).where(
        Request.machine_id == machine_id, Request.command == "open_display",
        Request.user_id == user_id).order_by(Request.id.desc()).limit(1))
    args = last.args or {} if last is not None else {}
    if last is None or args.get("client_ip") != client_ip or bool(args.get("console")) != console:
        return None
    if last.status == queue.FAILED:
        return None
    if last.status == queue.DONE and (
            last.finished_at is None
            or last.finished_at < utcnow() - timedelta(seconds=window)):
        return None
    changed = s.scalar(select(Request.id).where(
        Request.machine_id == machine_id, Request.id > last.id,
        Request.command.not_in(HARMLESS)).limit(1))
    return None if changed is not None else last.id
