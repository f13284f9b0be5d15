"""Hypervisor nodes for administrators: state, load, memory, desktops; enable, disable, drain.

The service behind /admin/nodes and /api/v1/nodes. A node is ``up`` while its heartbeat is
younger than its own ``heartbeat_timeout`` (:func:`ravada.placement.is_up`); enabling,
disabling and draining only change what placement may choose next: running desktops stay.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from ravada import placement
from ravada.db import BaseCopy, Machine, Node, utcnow
from ravada.front.dbutil import write_session
from ravada.front.errors import BadInput, Forbidden, NotFound
from ravada.front.state import FrontState, Viewer

EDITABLE = ("enabled", "draining")


def state_of(node: Node, now: Any = None) -> str:
    """up | down | disabled | draining: what the admin page shows first."""
    if not placement.is_up(node, now):
        return "down"
    if not node.enabled:
        return "disabled"
    return "draining" if node.draining else "up"


def _json(node: Node, desktops: dict[int, int], bases: dict[int, int], now: Any) -> dict:
    return {"id": node.id, "name": node.name, "state": state_of(node, now),
            "enabled": node.enabled, "draining": node.draining,
            "display_address": node.display_address, "cluster_address": node.cluster_address,
            "running": node.running, "desktops": desktops.get(node.id, 0),
            "bases": bases.get(node.id, 0), "vcpus": node.vcpus,
            "mem_total_mb": node.mem_total_mb, "mem_free_mb": node.mem_free_mb,
            "max_desktops": node.max_desktops, "memory_mb": node.memory_mb,
            "heartbeat_timeout": node.heartbeat_timeout, "version": node.version,
            "heartbeat_at": node.heartbeat_at.isoformat() + "Z" if node.heartbeat_at else None}


def _need_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise Forbidden(_("administrators only"))


def list_nodes(fs: FrontState, viewer: Viewer) -> list[dict[str, Any]]:
    _need_admin(viewer)
    now = utcnow()
    with fs.db.sessionmaker() as s:
        desktops = dict(s.execute(select(Machine.node_id, func.count()).where(
            Machine.node_id.is_not(None), Machine.state.in_(placement.ACTIVE))
            .group_by(Machine.node_id)).all())
        bases = dict(s.execute(select(BaseCopy.node_id, func.count()).where(
            BaseCopy.state == "ready").group_by(BaseCopy.node_id)).all())
        return [_json(n, desktops, bases, now)
                for n in s.scalars(select(Node).order_by(Node.name))]


def get_node(fs: FrontState, viewer: Viewer, node_id: int) -> dict[str, Any]:
    for node in list_nodes(fs, viewer):
        if node["id"] == node_id:
            return node
    raise NotFound(_("no node %(node_id)s", node_id=node_id))


def update_node(fs: FrontState, viewer: Viewer, node_id: int,
                data: dict[str, Any]) -> dict[str, Any]:
    """Set ``enabled`` and/or ``draining`` (booleans); anything else is a 400 naming it."""
    _need_admin(viewer)
    if not data:
        raise BadInput(_("nothing to change: send %(value)s", value=' and/or '.join(EDITABLE)))
    for key, value in data.items():
        if key not in EDITABLE:
            raise BadInput(_("%(key)s: unknown field (editable: %(value)s)",
                             key=key, value=', '.join(EDITABLE)))
        if not isinstance(value, bool):
            raise BadInput(_("%(key)s: expected true or false, got %(value)s",
                             key=key, value=repr(value)))
    with write_session(fs.db) as s:
        node = s.get(Node, node_id)
        if node is None:
            raise NotFound(_("no node %(node_id)s", node_id=node_id))
        for key, value in data.items():
            setattr(node, key, value)
    return get_node(fs, viewer, node_id)


def form_change(op: str) -> dict[str, bool]:
    """The admin page's buttons as a change."""
    changes = {"enable": {"enabled": True}, "disable": {"enabled": False},
               "drain": {"draining": True}, "undrain": {"draining": False}}
    if op not in changes:
        raise BadInput(_("op: unknown operation %(op)s (enable, disable, drain, undrain)",
                         op=repr(op)))
    return changes[op]
