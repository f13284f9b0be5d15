"""Requests about users rather than machines: a disabled user loses their open access."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select, update

from ravada import queue
from ravada.back import access
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.nodes import mine
from ravada.db import ConsoleSession, FirewallRule, Machine, Node, User, utcnow

log = logging.getLogger(__name__)


def _fan_out(ctx: Context, user_id: int) -> None:
    """Each node's iptables are its own backend's: the other nodes close theirs."""
    if ctx.node_id is None:
        return
    with ctx.db.session() as s:
        others = s.scalars(select(Node.id).where(Node.id != ctx.node_id)).all()
        for node_id in others:
            queue.enqueue(s, "close_user", {"user_id": user_id, "fanout": True},
                          node_id=node_id)


def close_user(ctx: Context, job: Job) -> dict[str, Any]:
    """Close the display openings of a disabled user's machines and end their consoles.

    The front queues it when an admin disables the user. The iptables rules go first
    (no write transaction is open meanwhile), then their rows; console sessions get
    ``ended_at`` and rvd_console closes the live ones it relays. Idempotent; a user
    enabled again before this runs keeps their access.
    """
    user_id = job.args.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise RequestError(f"bad user_id {user_id!r}: an integer")
    with ctx.db.sessionmaker() as s:
        user = s.get(User, user_id)
        if user is None:
            raise RequestError(f"user {user_id} does not exist")
        if not user.is_disabled:
            return {"user_id": user_id, "closed": [], "consoles_ended": 0}
        owned = s.execute(select(Machine.id, Machine.name)
                          .where(Machine.owner_id == user_id, mine(ctx))).all()
    for _, name in owned:
        ctx.firewall.close(name)
    access.close_user(ctx, user_id)  # and what they opened on other people's machines
    with ctx.db.session() as s:
        if owned:
            s.execute(delete(FirewallRule).where(
                FirewallRule.machine_id.in_([mid for mid, _ in owned])))
        ended = s.execute(update(ConsoleSession)
                          .where(ConsoleSession.user_id == user_id,
                                 ConsoleSession.ended_at.is_(None))
                          .values(ended_at=utcnow())).rowcount
    log.info("user %s disabled: closed %d machine(s), ended %d console session(s)",
             user_id, len(owned), ended)
    if not job.args.get("fanout"):
        _fan_out(ctx, user_id)
    return {"user_id": user_id, "closed": sorted(name for _, name in owned),
            "consoles_ended": int(ended or 0)}
