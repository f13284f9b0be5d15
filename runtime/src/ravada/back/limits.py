"""Per-user limit of running machines, checked by the backend before it starts anything.

The global limit is the ``max_running_per_user`` setting (0: none); a group with
``max_running`` set gives its members that limit instead (the most generous of their groups',
see :func:`ravada.policy.user_limit`). A check and the start that follows hold the user's
lock, so two clicks of one user cannot both pass the check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, null, select, union_all

from ravada import policy as rpolicy
from ravada.back.context import Context
from ravada.back.errors import RequestError
from ravada.db import Group, GroupMember, Machine, Setting

SETTING = "max_running_per_user"
RUNNING = ("running", "paused")

_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def user_lock(user_id: int) -> Iterator[None]:
    """Serialise one user's limit check + start in this backend."""
    with _locks_guard:
        lock = _locks.setdefault(user_id, threading.Lock())
    with lock:
        yield


def _global(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def limits_of(ctx: Context, user_id: int) -> tuple[int, dict[str, int]]:
    """The global limit and ``group name -> max_running`` of the user's groups that set
    one, in one round trip (every click with a start asks)."""
    glob = select(Setting.value.label("value"), null().label("name"), null().label("limit")) \
        .where(Setting.key == SETTING)
    groups = select(null(), Group.name, Group.max_running) \
        .join(GroupMember, GroupMember.group_id == Group.id) \
        .where(GroupMember.user_id == user_id, Group.max_running.is_not(None))
    value, by_group = 0, {}
    with ctx.db.sessionmaker() as s:
        for setting, name, limit in s.execute(union_all(glob, groups)):
            if name is None:
                value = _global(setting)
            else:
                by_group[name] = int(limit)
    return value, by_group


def running(ctx: Context, user_id: int, exclude: int | None = None) -> int:
    q = select(func.count()).select_from(Machine).where(
        Machine.owner_id == user_id, Machine.state.in_(RUNNING), Machine.is_base.is_(False))
    if exclude is not None:
        q = q.where(Machine.id != exclude)
    with ctx.db.sessionmaker() as s:
        return s.scalar(q) or 0


def check(ctx: Context, user_id: int, exclude: int | None = None) -> None:
    """Refuse (RequestError naming the limit) one more running machine for ``user_id``."""
    limit, source = rpolicy.user_limit(*limits_of(ctx, user_id))
    if limit <= 0:  # no limit: no need to count
        return
    why = rpolicy.over_limit(running(ctx, user_id, exclude), limit, source)
    if why:
        raise RequestError(why)
