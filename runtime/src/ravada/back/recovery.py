"""End the requests a dead backend left ``working`` (at start-up, then every few seconds).

A backend is dead when its heartbeat is stale or missing, whatever its pid: pids are reused
(after a reboot another process may well have the old pid). Commands that are safe to repeat
go back to ``requested`` (up to MAX_ATTEMPTS); the others fail with "interrupted" after what
they half-made is removed. Timed-out requests of a dead backend free their machine.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlalchemy import select, update

from ravada.back.context import Context
from ravada.back.handlers import RETRYABLE
from ravada.back.machines import discard
from ravada.db import Backend, Machine, Request, utcnow
from ravada.queue import FAILED, REQUESTED, WORKING, release

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STALE_AFTER = timedelta(seconds=20)  # a heartbeat older than this is a dead backend


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(worker: str | None, heartbeats: dict[str, object], me: str,
            starting: bool = True) -> bool:
    """True when the backend ``worker`` (``host:pid``) is gone.

    The heartbeat decides: none, or older than STALE_AFTER, is dead even when a process
    with that pid exists (pids are reused after a reboot). A fresh heartbeat from a pid
    of this host that no longer runs is dead too. At start-up (``starting``) ``me`` counts
    as gone: recovery runs before this process claims anything, so a request under our
    name is from an earlier process that had our pid.
    """
    if not worker:
        return True
    if worker == me:
        return starting
    beat = heartbeats.get(worker)
    if beat is None or beat < utcnow() - STALE_AFTER:  # type: ignore[operator]
        return True
    hostname, _, pid = worker.rpartition(":")
    return hostname == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def _half_made(ctx: Context, req: Request) -> list[tuple[int | None, str]]:
    """The machines (id, name) an interrupted create/clone started to make."""
    found: dict[int | None, str] = {}
    made = (req.result or {}).get("machine_id")
    with ctx.db.session() as s:
        if isinstance(made, int):
            m = s.get(Machine, made)
            if m is not None and m.state in ("creating", "failed"):
                found[m.id] = m.name
        name = (req.args or {}).get("name") if req.command == "create" else None
        if isinstance(name, str):
            m = s.scalar(select(Machine).where(Machine.name == name))
            if m is not None and m.state in ("creating", "failed"):
                found[m.id] = m.name
    return list(found.items())


def recover(ctx: Context, me: str, starting: bool = True) -> dict[str, int]:
    """Retry or fail every orphaned ``working`` request; returns counts."""
    counts = {"retried": 0, "failed": 0, "cleaned": 0, "released": 0}
    with ctx.db.sessionmaker() as s:
        beats = {b.name: b.heartbeat_at for b in s.scalars(select(Backend))}
        orphans = [r for r in s.scalars(select(Request).where(Request.status == WORKING))
                   if is_dead(r.worker, beats, me, starting)]
        held = [r.id for r in s.scalars(select(Request).where(
                    Request.status == FAILED, Request.finished_at.is_(None)))
                if is_dead(r.worker, beats, me, starting)]
        s.expunge_all()
    for req_id in held:  # timed out, and their thread died with its backend
        release(ctx.db, req_id)
        counts["released"] += 1
    for req in orphans:
        if req.command in RETRYABLE and req.attempts < MAX_ATTEMPTS:
            values = {"status": REQUESTED, "worker": None, "started_at": None}
            counts["retried"] += 1
            log.warning("request %d (%s) was interrupted: queued again", req.id, req.command)
        else:
            error = "interrupted"
            if req.command in RETRYABLE:
                error = f"interrupted {req.attempts} times; giving up"
            if req.command in ("create", "clone"):
                for machine_id, name in _half_made(ctx, req):
                    discard(ctx, name, machine_id)
                    counts["cleaned"] += 1
            values = {"status": FAILED, "error": error, "result": None,
                      "finished_at": utcnow()}
            counts["failed"] += 1
            log.warning("request %d (%s) was interrupted: failed", req.id, req.command)
        with ctx.db.session() as s:
            s.execute(update(Request).where(Request.id == req.id, Request.status == WORKING,
                                            Request.worker == req.worker)
                      .values(**values))
    return counts


def clean_stale_backends(ctx: Context, me: str) -> None:
    """Forget backend rows whose heartbeat stopped (the front shows only live ones)."""
    with ctx.db.session() as s:
        for b in s.scalars(select(Backend)):
            if b.name != me and is_dead(b.name, {b.name: b.heartbeat_at}, me):
                s.delete(b)
