"""Which hypervisor node runs a request: routing at enqueue time, placement of new desktops.

Neutral (front, CLI and back enqueue requests): it reads the database only. A request for
an existing machine goes to the machine's node; a new clone is *placed*: among the nodes
that are enabled, not draining, with a fresh heartbeat, holding the base (a ready
``base_copies`` row, or the base's own node) and under their capacity, the one with the
fewest running desktops, then the most free memory (Ravada's rule). The decision and its
reason go on the request (``node_id``, ``args["placement"]``), so an admin can read why.

"Running" counts the node's active machines plus the placed requests not finished yet:
a burst of clicks spreads at once instead of piling onto the node whose heartbeat is
oldest (heartbeats carry libvirt's view every few seconds; the queue is newer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ravada.db import BaseCopy, Machine, Node, Request, utcnow

PLACED = ("clone",)  # commands that may make a new domain somewhere
ACTIVE = ("running", "paused", "creating")


@dataclass(frozen=True)
class Candidate:
    """A node as placement sees it."""

    id: int
    name: str
    running: int
    free_mb: int
    why_not: str = ""  # empty: it may be chosen


def is_up(node: Node, now: Any = None) -> bool:
    """A fresh heartbeat: younger than the node's own timeout."""
    if node.heartbeat_at is None:
        return False
    now = now or utcnow()
    return node.heartbeat_at >= now - timedelta(seconds=node.heartbeat_timeout)


def _loads(s: Session) -> tuple[dict[int, int], dict[int, int]]:
    """Active machines plus pending placed requests per node; memory of active machines."""
    rows = s.execute(select(Machine.node_id, func.count(), func.sum(Machine.memory_mb))
                     .where(Machine.node_id.is_not(None), Machine.state.in_(ACTIVE))
                     .group_by(Machine.node_id)).all()
    running = {n: int(c) for n, c, _ in rows}
    memory = {n: int(m or 0) for n, _, m in rows}
    pending = s.execute(select(Request.node_id, func.count())
                        .where(Request.node_id.is_not(None), Request.command.in_(PLACED),
                               Request.status.in_(("requested", "working")))
                        .group_by(Request.node_id)).all()
    for n, c in pending:
        running[n] = running.get(n, 0) + int(c)
    return running, memory


def candidates(s: Session, base: Machine | None, memory_mb: int = 0) -> list[Candidate]:
    """Every node with its load and, when it may not be chosen, why not."""
    now = utcnow()
    running, used = _loads(s)
    ready: set[int] | None = None
    if base is not None and base.node_id is not None:
        ready = set(s.scalars(select(BaseCopy.node_id).where(
            BaseCopy.machine_id == base.id, BaseCopy.state == "ready")))
        ready.add(base.node_id)
    pinned = set(base.pinned_nodes) if base is not None and base.pinned_nodes else None
    out = []
    for node in s.scalars(select(Node).order_by(Node.id)):
        load = running.get(node.id, 0)
        free = node.mem_free_mb
        if node.memory_mb:
            free = node.memory_mb - used.get(node.id, 0)
        why = ""
        if not node.enabled:
            why = "disabled"
        elif node.draining:
            why = "draining"
        elif not is_up(node, now):
            why = "down (no fresh heartbeat)"
        elif pinned is not None and node.name not in pinned:
            why = "the base is pinned to other nodes"
        elif ready is not None and node.id not in ready:
            why = "the base is not copied there yet"
        elif node.max_desktops and load >= node.max_desktops:
            why = f"full ({load}/{node.max_desktops} desktops)"
        elif memory_mb and node.memory_mb and free < memory_mb:
            why = f"not enough memory ({free} MiB free, {memory_mb} MiB needed)"
        out.append(Candidate(node.id, node.name, load, free, why))
    return out


def choose(s: Session, base: Machine | None, memory_mb: int = 0
           ) -> tuple[int | None, dict[str, Any] | None]:
    """(node id, decision) for a new desktop; (None, None) when no node is registered."""
    cands = candidates(s, base, memory_mb)
    if not cands:
        return None, None
    ok = [c for c in cands if not c.why_not]
    if not ok:
        reasons = "; ".join(f"{c.name}: {c.why_not}" for c in cands)
        return None, {"node": None, "reason": f"no node can take it ({reasons})"}
    best = min(ok, key=lambda c: (c.running, -c.free_mb, c.id))
    others = len(ok) - 1
    reason = (f"fewest running ({best.running}), then most free memory ({best.free_mb} MiB)"
              f" among {others + 1} eligible node{'s' if others else ''}")
    return best.id, {"node": best.name, "reason": reason}


def route(s: Session, command: str, args: dict[str, Any], machine_id: int | None,
          user_id: int | None) -> tuple[int | None, dict[str, Any] | None]:
    """The node of a new request (None: any backend) and the placement decision, if any."""
    if machine_id is None:
        return None, None
    machine = s.get(Machine, machine_id)
    if machine is None:
        return None, None
    if command not in PLACED:
        return machine.node_id, None
    owner = args.get("user_id", user_id) if args.get("pool") is not True else None
    if isinstance(owner, int) and not isinstance(owner, bool):
        mine = s.execute(select(Machine.node_id).where(
            Machine.base_id == machine.id, Machine.owner_id == owner)).first()
        if mine is not None and mine[0] is not None:
            return mine[0], {"node": _name(s, mine[0]), "reason": "the user's desktop is there"}
    return choose(s, machine, machine.memory_mb)


def _name(s: Session, node_id: int) -> str | None:
    return s.scalar(select(Node.name).where(Node.id == node_id))

