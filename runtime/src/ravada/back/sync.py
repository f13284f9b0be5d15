"""Keep the DB true to libvirt: full refresh, lifecycle events, firewall reconcile."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import delete, select

from ravada import hardware, queue, waiters
from ravada.back import timers
from ravada.back.context import Context
from ravada.back.machines import forget_access
from ravada.back.nodes import mine
from ravada.db import FirewallRule, Machine
from ravada.firewall import Rule
from ravada.virt import GuestNotFound

log = logging.getLogger(__name__)

# Rows in these states belong to a request at work; events and refresh leave them alone.
BUSY = ("creating", "removing")


def _observe(ctx: Context, name: str, state: str) -> tuple[str, dict[str, Any] | None]:
    """libvirt and iptables first: the display of a running guest, closed ports otherwise."""
    display = None
    if state == "running":
        try:
            display = ctx.host.guest(name).display()
        except GuestNotFound:
            state = "unknown"
    if state not in ("running", "paused"):
        ctx.firewall.close(name)
    return state, display


def _write(s: Any, machine: Machine, state: str, display: dict[str, Any] | None,
           remove: list[int] | None = None) -> bool:
    """Then the row (in the write session); True if it changed.

    A volatile clone that stopped is added to ``remove``.
    """
    before = (machine.state, machine.display)
    machine.state = state
    if state == "running":
        machine.display = display
    elif state != "paused":
        forget_access(s, machine)
        machine.guest_info = None  # the agent's report ends with the guest
    hardware.on_state(machine, before[0])
    if timers.on_state(s, machine, before[0]) and remove is not None:
        remove.append(machine.id)
    return before != (machine.state, machine.display)


def sync_all(ctx: Context) -> dict[str, int]:
    """Every machine's (of this node) state and display from libvirt; returns counts.

    Read the rows, ask libvirt (and close the ports of stopped machines), then write in one
    short transaction; a row a request took meanwhile (``BUSY``) is left alone.
    """
    guests = ctx.host.list_guests()
    counts = {"machines": 0, "changed": 0, "missing": 0}
    remove: list[int] = []
    with ctx.db.sessionmaker() as s:
        rows = [(m.id, m.name, m.state) for m in s.scalars(select(Machine).where(mine(ctx)))]
    seen: dict[int, tuple[str, dict[str, Any] | None]] = {}
    for machine_id, name, state in rows:
        counts["machines"] += 1
        if state in BUSY:
            continue
        live = guests.get(name)
        if live is None:
            counts["missing"] += 1
            live = "unknown"
        seen[machine_id] = _observe(ctx, name, live)
    if seen:
        with ctx.db.session() as s:
            for machine in s.scalars(select(Machine).where(Machine.id.in_(list(seen)))):
                if machine.state not in BUSY:
                    counts["changed"] += _write(s, machine, *seen[machine.id], remove)
    if counts["changed"]:
        waiters.changed(ctx.config.queue.socket)
    for machine_id in remove:
        timers.request_removal(ctx, machine_id)
    log.info("refresh: %(machines)d machines, %(changed)d changed, %(missing)d missing", counts)
    return counts


def reconcile_firewall(ctx: Context) -> int:
    """Make the chain hold exactly the rules of this node's running machines; drop other
    rows of its machines (another node's rules are that node's backend's)."""
    ctx.firewall.ensure_chain()
    desired: list[Rule] = []
    with ctx.db.session() as s:
        rows = s.execute(select(FirewallRule, Machine).join(
            Machine, Machine.id == FirewallRule.machine_id).where(mine(ctx))
            .order_by(FirewallRule.created_at, FirewallRule.id)).all()
        stale = []
        for rule, machine in rows:
            if machine.state == "running":
                desired.append(Rule(machine.name, rule.port, rule.client_ip))
            else:
                stale.append(rule.id)
        if stale:
            s.execute(delete(FirewallRule).where(FirewallRule.id.in_(stale)))
    ctx.firewall.reconcile(desired)
    return len(desired)


class EventSink:
    """``on_state`` for :class:`~ravada.virt.Host`: writes lifecycle events to the DB.

    libvirt's callback returns at once; the work runs on one thread of its own, in
    event order, so it may call libvirt again (to read the display ports).
    """

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")

    def __call__(self, name: str, state: str) -> None:
        self._pool.submit(self._handle, name, state)

    def graphics(self, name: str, phase: str) -> None:
        """``on_graphics`` for the Host: a display client connected or disconnected."""
        self._pool.submit(self._handle_graphics, name, phase)

    def _handle(self, name: str, state: str) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        try:
            for _ in range(3):
                if self._record(ctx, name):
                    return
            log.warning("lifecycle event %s -> %s: the row kept changing, left to the "
                        "next event or refresh", name, state)
        except Exception:  # an event must never kill the thread
            log.exception("lifecycle event %s -> %s not recorded", name, state)

    @staticmethod
    def _record(ctx: Context, name: str) -> bool:
        """Write libvirt's state now (events arrive late: a request may have acted since
        this one was sent). False when a request wrote the row between the read and the
        write: its state may be newer than what libvirt said here, so read both again."""
        with ctx.db.sessionmaker() as s:
            machine = s.scalar(select(Machine).where(Machine.name == name))
            if machine is None or machine.state in BUSY:
                return True
            machine_id, seen = machine.id, (machine.state, machine.updated_at)
        try:
            live = ctx.host.guest(name).state()
        except GuestNotFound:
            live = "unknown"
        state, display = _observe(ctx, name, live)  # libvirt/iptables before the write
        remove: list[int] = []
        with ctx.db.session() as s:
            machine = s.get(Machine, machine_id)
            if machine is None or machine.state in BUSY:
                return True
            if (machine.state, machine.updated_at) != seen:
                return False
            changed = _write(s, machine, state, display, remove)
            if changed:
                log.info("machine %s is %s", name, machine.state)
        if changed:
            waiters.changed(ctx.config.queue.socket)  # live lists see it now
        for removed in remove:
            timers.request_removal(ctx, removed)
        return True

    def _handle_graphics(self, name: str, phase: str) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        try:
            with ctx.db.session() as s:
                machine = s.scalar(select(Machine).where(Machine.name == name))
                if machine is None or machine.state in BUSY:
                    return
                timers.on_graphics(s, machine, phase)
                log.info("machine %s: display client %s (%d now)", name, phase,
                         machine.clients)
            queue.notify(ctx.config.queue.socket)  # the daemon re-reads its next deadline
            waiters.changed(ctx.config.queue.socket)  # "connected now" on the admin pages
        except Exception:
            log.exception("graphics event %s %s not recorded", name, phase)

    def agent(self, name: str, connected: bool) -> None:
        """``on_agent`` for :class:`~ravada.virt.Host`: the guest agent came or went."""
        self._pool.submit(self._handle_agent, name, connected)

    def _handle_agent(self, name: str, connected: bool) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        try:
            info = ctx.host.guest(name).agent_info() if connected else None
            with ctx.db.session() as s:
                machine = s.scalar(select(Machine).where(Machine.name == name))
                if machine is None or machine.state in BUSY:
                    return
                machine.guest_info = info
            log.info("guest agent of %s: %s", name, info or "gone")
        except Exception:  # an event must never kill the thread
            log.exception("guest agent event of %s not recorded", name)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
