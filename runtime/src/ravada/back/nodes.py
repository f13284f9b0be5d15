"""This backend's hypervisor node: registration, heartbeat, adoption of unplaced machines.

Every rvd_back upserts its node row at start and then with each heartbeat (memory, running
desktops, vCPUs from its libvirt): placement reads these rows, and a stale heartbeat is a
node that is down. Admin choices (enabled, draining) live in the row and survive restarts:
the configuration only sets them at the first registration.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

import ravada
from ravada.back.context import Context
from ravada.config import Config
from ravada.db import Database, Machine, Node, utcnow
from ravada.placement import is_up

log = logging.getLogger(__name__)


def mine(ctx: Context) -> Any:
    """The machines this backend answers for: its node's, and the unplaced ones."""
    if ctx.node_id is None:
        return Machine.id.is_not(None)
    return or_(Machine.node_id == ctx.node_id, Machine.node_id.is_(None))


def node_name(config: Config) -> str:
    """``node.name``, else the short host name (a single host needs no ``node:`` section)."""
    return config.node.name or socket.gethostname().split(".")[0]


def display_address(config: Config) -> str:
    """What viewers connect to for machines here."""
    return (config.node.display_address or config.display.public_host
            or config.display.listen)


def _facts(host: Any) -> dict[str, int]:
    """libvirt's view of this host; zeros when libvirt does not answer (still alive)."""
    try:
        info = host.call("node info", lambda c: (c.getInfo(), c.getFreeMemory(),
                                                 c.numOfDomains()))
    except Exception as exc:  # a heartbeat must not fail because libvirt hiccups
        log.warning("node facts not read from libvirt: %s", exc)
        return {}
    (_arch, mem_mb, cpus, *_rest), free_bytes, active = info
    return {"mem_total_mb": int(mem_mb), "mem_free_mb": int(free_bytes // 2**20),
            "vcpus": int(cpus), "running": int(active)}


def register(config: Config, db: Database, host: Any) -> int:
    """Insert or refresh this node's row (first heartbeat included); return its id."""
    name = node_name(config)
    node = config.node
    values: dict[str, Any] = {
        "display_address": display_address(config),
        "cluster_address": node.cluster_address,
        "libvirt_uri": node.libvirt_uri,
        "max_desktops": node.max_desktops, "memory_mb": node.memory_mb,
        "heartbeat_timeout": node.heartbeat_timeout, "version": ravada.__version__,
        "heartbeat_at": utcnow(), **_facts(host)}
    for _ in range(2):
        with db.session() as s:
            row = s.scalar(select(Node).where(Node.name == name))
            if row is not None:
                for key, value in values.items():
                    setattr(row, key, value)
                return row.id
        try:
            with db.session() as s:
                row = Node(name=name, enabled=node.enabled, draining=False, **values)
                s.add(row)
                s.flush()
                log.info("node %s registered (id %d)", name, row.id)
                return row.id
        except IntegrityError:
            continue  # another backend of this node registered it meanwhile
    raise RuntimeError(f"node {name!r} could not be registered")


def heartbeat(db: Database, host: Any, node_id: int) -> None:
    """Say this node is alive, with its load (libvirt read before the write transaction)."""
    facts = _facts(host)
    with db.session() as s:
        s.execute(update(Node).where(Node.id == node_id)
                  .values(heartbeat_at=utcnow(), **facts))


def adopt(db: Database, host: Any, node_id: int) -> int:
    """Give this node the unplaced machines whose domain is in its libvirt (an upgrade from
    one host, or machines made before any node registered); returns how many."""
    guests = host.list_guests()
    with db.session() as s:
        rows = s.execute(select(Machine.id, Machine.name).where(Machine.node_id.is_(None))).all()
        mine = [mid for mid, name in rows if name in guests]
        if mine:
            s.execute(update(Machine).where(Machine.id.in_(mine), Machine.node_id.is_(None))
                      .values(node_id=node_id))
    if mine:
        log.info("node %d adopted %d machine(s) found in its libvirt", node_id, len(mine))
    return len(mine)


def mark_down(db: Database, me: int | None) -> int:
    """Machines of nodes whose heartbeat went stale show ``unknown`` (their backend cannot
    say); when that backend starts again its refresh reads the true states from libvirt.

    Any live backend does it (every few seconds, with the recovery of dead backends'
    requests), so the pages, the API and the CLI read the one state column as they do.
    """
    now = utcnow()
    with db.session() as s:
        down = [n.id for n in s.scalars(select(Node)) if n.id != me and not is_up(n, now)]
        if not down:
            return 0
        done = s.execute(update(Machine).where(
            Machine.node_id.in_(down), Machine.state.not_in(("unknown", "creating", "removing")))
            .values(state="unknown"))
        count = done.rowcount or 0
    if count:
        log.warning("%d machine(s) of down node(s) %s marked unknown", count, down)
    return count
