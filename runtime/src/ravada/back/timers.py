"""Clone deadlines and display presence: the daemon's "next deadline" sleep.

Every deadline lives in the database (``machines.run_until`` / ``machines.idle_until``), so a
restarted daemon keeps them. State and graphics events set or clear them (:func:`on_state`,
:func:`on_graphics`; libvirt reports every display client: SPICE and VNC viewers, and
rvd_console, which is a VNC client of the machine); the daemon sleeps until
:meth:`Timers.next_wait` and then :meth:`Timers.fire` queues a shutdown (``remove`` for a
volatile clone) for each machine whose deadline passed. An unfinished ISO upload's deadline is
its last chunk (``isos.updated_at``) plus ``front.iso_upload_abandon_hours``: past it the
upload and its staged file are removed. Nothing here scans on a clock tick.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ravada import policy as rpolicy
from ravada import queue
from ravada.back import isolib
from ravada.back.context import Context
from ravada.back.nodes import mine
from ravada.db import Machine, Request, utcnow

log = logging.getLogger(__name__)

RUNNING = ("running", "paused")
STOPPED = ("shutdown", "hibernated")
PENDING = (queue.REQUESTED, queue.WORKING)


def policy_of(base: Machine | None) -> rpolicy.Policy:
    """The policy a base gives its clones (no policy for a machine without a base)."""
    if base is None:
        return rpolicy.Policy()
    return rpolicy.Policy(
        volatile=bool(base.volatile), pool_size=base.pool_size or 0,
        pool_started=base.pool_started or 0, run_timeout=base.run_timeout or 0,
        shutdown_disconnected=bool(base.shutdown_disconnected),
        shutdown_grace=base.shutdown_grace or 300)


def arm(s: Session, machine: Machine, now: datetime,
        pol: rpolicy.Policy | None = None) -> None:
    """Deadlines of a user's clone that starts (or is handed out) at ``now``; ``pol``: its
    base's policy when the caller has read the base already."""
    if pol is None:
        pol = policy_of(machine.base)
    machine.started_at = now
    machine.run_until = rpolicy.run_deadline(pol, now)
    machine.idle_until = None if machine.clients > 0 else rpolicy.idle_deadline(pol, now)


def is_volatile_clone(machine: Machine) -> bool:
    """A user's clone of a volatile base. The base carries ``volatile`` too (its policy):
    it is never discarded, nor is an unassigned pool clone."""
    return (bool(machine.volatile) and machine.base_id is not None and not machine.is_base
            and not machine.is_pool)


def on_state(s: Session, machine: Machine, before: str) -> bool:
    """Keep a machine's deadlines true to its new state (idempotent).

    Returns True when the machine is a volatile clone that stopped: it must be removed.
    """
    now = utcnow()
    if machine.state in RUNNING:
        if machine.started_at is None or before not in RUNNING:
            if machine.is_pool or machine.base_id is None:
                machine.started_at = now  # pool clones wait without deadlines
            else:
                arm(s, machine, now)
        return False
    if machine.state in STOPPED or machine.state == "unknown":
        machine.started_at = machine.run_until = machine.idle_until = None
        machine.clients = 0
        return is_volatile_clone(machine) and machine.state in STOPPED
    return False


def on_graphics(s: Session, machine: Machine, phase: str) -> None:
    """A display client connected or left (libvirt graphics event or a console session)."""
    now = utcnow()
    if phase == "connect":
        machine.clients = (machine.clients or 0) + 1
        machine.last_connected_at = now
        machine.idle_until = None
    elif phase == "disconnect":
        machine.clients = max(0, (machine.clients or 0) - 1)
        machine.last_connected_at = now
        if machine.clients == 0 and machine.state in RUNNING and not machine.is_pool:
            machine.idle_until = rpolicy.idle_deadline(policy_of(machine.base), now)


def request_removal(ctx: Context, machine_id: int) -> int | None:
    """Queue ``remove`` for a stopped volatile clone unless one is pending already."""
    with ctx.db.session() as s:
        pending = s.scalar(select(Request.id).where(
            Request.machine_id == machine_id, Request.command == "remove",
            Request.status.in_(PENDING)))
        if pending is not None:
            return None
        req_id = queue.enqueue(s, "remove", {"reason": "volatile"}, machine_id=machine_id).id
    queue.notify(ctx.config.queue.socket)
    log.info("volatile clone %d stopped: removal queued (request %d)", machine_id, req_id)
    return req_id


class Timers:
    """The daemon's view of the earliest deadline; all state is in the database."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def next_deadline(self) -> datetime | None:
        with self.ctx.db.sessionmaker() as s:
            row = s.execute(select(func.min(Machine.run_until),
                                   func.min(Machine.idle_until)).where(mine(self.ctx))).one()
        found = [d for d in (rpolicy.next_deadline(row), isolib.abandon_deadline(self.ctx))
                 if d is not None]
        return min(found) if found else None

    def next_wait(self, cap: float) -> float:
        """Seconds until the earliest deadline, at most ``cap``."""
        deadline = self.next_deadline()
        if deadline is None:
            return cap
        return max(0.0, min(cap, (deadline - utcnow()).total_seconds()))

    def fire(self) -> list[int]:
        """Queue the end of every machine past a deadline (returns the request ids), and
        remove the ISO uploads abandoned past theirs."""
        now = utcnow()
        deadline = isolib.abandon_deadline(self.ctx)
        if deadline is not None and deadline <= now:
            isolib.expire_uploads(self.ctx)
        out: list[int] = []
        with self.ctx.db.session() as s:
            due = s.scalars(select(Machine).where(  # each node ends its own machines
                mine(self.ctx), or_(Machine.run_until <= now, Machine.idle_until <= now))).all()
            for m in due:
                idle_due = m.idle_until is not None and m.idle_until <= now
                run_due = m.run_until is not None and m.run_until <= now
                m.idle_until = None if idle_due else m.idle_until
                m.run_until = None if run_due else m.run_until
                if m.state not in RUNNING:
                    continue
                if not run_due and m.clients > 0:
                    continue  # somebody came back: the grace deadline is void
                command = "remove" if is_volatile_clone(m) else "shutdown"
                busy = s.scalar(select(Request.id).where(
                    Request.machine_id == m.id, Request.command.in_(("remove", "shutdown")),
                    Request.status.in_(PENDING)))
                if busy is not None:
                    continue
                why = "run_timeout" if run_due else "disconnected"
                out.append(queue.enqueue(s, command, {"reason": why}, machine_id=m.id).id)
                log.info("machine %s: %s (%s)", m.name, command, why)
        return out

