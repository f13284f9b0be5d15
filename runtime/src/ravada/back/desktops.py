"""One desktop per user per base: clicks racing in one backend wait for the first.

The unique constraint ``uq_machines_base_owner`` is the rule across backends; this keeps
the common case (a burst of clicks on one backend) from failing: the second to eighth
click of a user on a base wait here until the first has made the clone, then use it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from ravada.back.context import Context
from ravada.db import Machine

_making: dict[tuple[int, int], threading.Lock] = {}
_guard = threading.Lock()


@contextmanager
def making(base_id: int, user_id: int) -> Iterator[None]:
    """Hold (base, user): one clone handler of that pair at a time in this process."""
    key = (base_id, user_id)
    with _guard:
        lock = _making.setdefault(key, threading.Lock())
    with lock:
        yield


def has_clone(ctx: Context, base_id: int, user_id: int) -> bool:
    with ctx.db.sessionmaker() as s:
        return s.scalar(select(Machine.id).where(Machine.base_id == base_id,
                                                 Machine.owner_id == user_id)) is not None
