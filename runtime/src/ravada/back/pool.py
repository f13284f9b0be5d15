"""Pools of pre-made clones: hand one out on a click, keep each pooled base topped up.

An unassigned pool clone has ``is_pool`` set and no owner; it is named ``<base>-pool-<n>``.
:func:`take` gives one (a running one first) to a user atomically. The daemon calls
:meth:`PoolKeeper.tick` when it wakes: it queues ``clone`` (pool) and ``start`` requests for
what the bases' policies miss, only while no user request waits in the queue and never on
every worker, so user clicks always go first. Refills also wait until requests stopped
arriving for :data:`REFILL_QUIET` seconds: a class clicking Start at once gets its pool
clones with the cores to itself (a refill boots a guest, which costs the clicks around it
far more than the refill waiting a few seconds costs anyone). On a site where requests never
stop for that long, refills held back for :data:`REFILL_HOLD_MAX` seconds go ahead on one
worker at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ravada import policy as rpolicy
from ravada import queue
from ravada.back import timers
from ravada.back.context import Context
from ravada.back.machines import discard
from ravada.back.nodes import mine
from ravada.db import Machine, Request, utcnow

log = logging.getLogger(__name__)

REFILL_QUIET = 3.0  # seconds without a new request before the keeper refills
REFILL_HOLD_MAX = 20.0  # seconds of a steady stream after which refills run on one worker


def take(ctx: Context, base: Machine, user_id: int) -> Machine | None:
    """Assign a free pool clone of ``base`` to ``user_id`` (running ones first); returns its
    row as written (detached: the caller needs no second read)."""
    with ctx.db.sessionmaker() as s:  # a read: no transaction to commit
        ids = s.scalars(select(Machine.id).where(
            Machine.base_id == base.id, Machine.is_pool.is_(True), Machine.owner_id.is_(None),
            Machine.state.in_(("running", "shutdown")),
            Machine.node_id == ctx.node_id if ctx.node_id is not None else Machine.id > 0)
            .order_by(case((Machine.state == "running", 0), else_=1), Machine.id)).all()
    pol = timers.policy_of(base)
    for machine_id in ids:
        try:
            with ctx.db.session() as s:
                done = s.execute(update(Machine).where(
                    Machine.id == machine_id, Machine.is_pool.is_(True),
                    Machine.owner_id.is_(None)).values(owner_id=user_id, is_pool=False))
                if not done.rowcount:
                    continue  # another click took it
                m = s.get(Machine, machine_id)
                assert m is not None
                if m.state in timers.RUNNING:
                    timers.arm(s, m, utcnow(), pol)
                s.flush()
                s.expunge(m)
        except IntegrityError:
            return None  # the user got a clone of this base meanwhile
        log.info("pool clone %d of base %d handed to user %d", machine_id, base.id, user_id)
        return m
    return None


_names_guard = threading.Lock()
_reserved: set[str] = set()  # pool names being made by this backend (no row yet)


@contextmanager
def new_name(ctx: Context, base: str) -> Iterator[str]:
    """A free ``<base>-pool-<n>``, reserved until the block ends (refills run in parallel)."""
    with _names_guard:
        # Read under the guard: a name read before another refill's row was committed and
        # its reservation dropped would look free and be taken twice.
        with ctx.db.sessionmaker() as s:
            taken = set(s.scalars(select(Machine.name).where(
                Machine.name.like(f"{base[:40]}%{rpolicy.POOL_INFIX}%"))))
        n = 1
        while (name := rpolicy.pool_name(base, n)) in taken or name in _reserved:
            n += 1
        _reserved.add(name)
    try:
        yield name
    finally:
        with _names_guard:
            _reserved.discard(name)


def clean_half_made(ctx: Context) -> int:
    """At start-up: pool clones left ``creating`` by a dead backend are removed."""
    with ctx.db.sessionmaker() as s:
        rows = s.execute(select(Machine.id, Machine.name).where(
            Machine.is_pool.is_(True), Machine.state == "creating")).all()
    for machine_id, name in rows:
        discard(ctx, name, machine_id)
    return len(rows)


class PoolKeeper:
    """Tops up every pooled base from the daemon loop; state is in the database."""

    def __init__(self, ctx: Context, workers: int, quiet: float = REFILL_QUIET,
                 hold_max: float = REFILL_HOLD_MAX) -> None:
        self.ctx = ctx
        self.budget = max(1, workers - 1)  # one worker stays free for user clicks
        self.inflight: dict[int, tuple[int, str]] = {}  # request id -> (base id, kind)
        self.last_tick: datetime | None = None
        self.quiet, self.hold_max = quiet, hold_max
        self._quiet_until = 0.0  # monotonic: no refill before this
        self._held_since: float | None = None  # monotonic: refills held back since

    def saw_request(self, req_id: int) -> None:
        """The daemon dispatched a request: one not of ours (a click, an admin's, a
        deadline's) holds the refills back for ``quiet`` seconds more."""
        if req_id not in self.inflight:
            self._quiet_until = time.monotonic() + self.quiet

    def next_wait(self, cap: float) -> float:
        """Seconds until refills may run again (the daemon sleeps at most this long)."""
        until = self._quiet_until
        if self._held_since is not None:
            until = min(until, self._held_since + self.hold_max)
        left = until - time.monotonic()
        return min(cap, left) if left > 0 else cap

    def budget_now(self) -> int:
        """Workers refills may use now: none while requests arrive (for ``hold_max`` at
        most, then one), all but one once they stopped for ``quiet`` seconds."""
        now = time.monotonic()
        if now >= self._quiet_until:
            self._held_since = None
            return self.budget
        if self._held_since is None:
            self._held_since = now
        return 1 if now - self._held_since >= self.hold_max else 0

    def _forget_finished(self, s: Session) -> None:
        if not self.inflight:
            return
        pending = set(s.scalars(select(Request.id).where(
            Request.id.in_(list(self.inflight)), Request.status.in_(timers.PENDING))))
        for req_id in list(self.inflight):
            if req_id not in pending:
                del self.inflight[req_id]

    def tick(self) -> list[int]:
        """Queue the next refill steps; returns the ids of the requests submitted."""
        submitted: list[int] = []
        budget = self.budget_now()
        if budget <= 0:
            return []  # requests are arriving: refill once they stop
        with self.ctx.db.session() as s:
            self._forget_finished(s)
            room = budget - len(self.inflight)
            if room <= 0:
                return []
            # pooled bases, and bases whose pool was shrunk to 0 but still has clones
            pooled = select(Machine.base_id).where(Machine.is_pool.is_(True))
            bases = s.scalars(select(Machine).where(  # one keeper per base: its node's
                Machine.is_base.is_(True), mine(self.ctx),
                or_(Machine.pool_size > 0, Machine.id.in_(pooled)))).all()
            if not bases:
                return []
            waiting = select(func.count()).select_from(Request).where(
                Request.status == queue.REQUESTED)
            if self.inflight:
                waiting = waiting.where(Request.id.not_in(list(self.inflight)))
            users_waiting = s.scalar(waiting)
            if users_waiting:
                return []  # user clicks first; the daemon wakes again when they are done
            for base in bases:
                for command, target, args in self._steps(s, base):
                    if room <= 0:
                        break
                    req = queue.enqueue(s, command, args, machine_id=target)
                    kind = "clone_start" if args.get("start") else command
                    self.inflight[req.id] = (base.id, kind)
                    submitted.append(req.id)
                    room -= 1
        if submitted:
            log.info("pool keeper queued %d request(s)", len(submitted))
        return submitted

    def _steps(self, s: Session, base: Machine) -> list[tuple[str, int, dict]]:
        pol = timers.policy_of(base)
        rows = s.execute(select(Machine.id, Machine.state).where(
            Machine.base_id == base.id, Machine.is_pool.is_(True),
            Machine.owner_id.is_(None))).all()
        mine = [kind for b, kind in self.inflight.values() if b == base.id]
        making = mine.count("clone") + mine.count("clone_start")
        counts = rpolicy.PoolCounts(
            made=sum(st != "creating" for _, st in rows),
            running=sum(st == "running" for _, st in rows) + mine.count("start")
            + mine.count("clone_start"),
            # a clone at work has a row in ``creating`` (once its handler began) and an entry
            # in ``inflight``: count it once
            creating=max(sum(st == "creating" for _, st in rows), making))
        work = rpolicy.pool_work(pol, counts)
        steps: list[tuple[str, int, dict]] = []
        need_running = work.start
        stopped = [mid for mid, st in rows if st == "shutdown"]
        for mid in stopped[:need_running]:
            steps.append(("start", mid, {}))
        need_running -= min(need_running, len(stopped))
        for i in range(work.create):
            steps.append(("clone", base.id, {"pool": True, "start": i < need_running}))
        extra = counts.made + counts.creating - pol.pool_size
        if extra > 0 and not mine:
            for mid, st in sorted(rows, key=lambda r: r[1] == "running")[:extra]:
                if st != "creating":
                    steps.append(("remove", mid, {"reason": "pool shrunk"}))
        return steps
