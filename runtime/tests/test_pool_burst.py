# ruff: noqa: F811  (pytest fixtures imported from test_classroom)
"""A class clicking Start against a pool (libvirt's test driver): every click gets a
running pool clone, and the pool keeper refills only once the clicks stopped."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select
from test_back import Running, wait_until
from test_classroom import _base, _clones, _user, back  # noqa: F401

from ravada import queue
from ravada.back.pool import REFILL_QUIET
from ravada.db import Request, utcnow


def test_refills_wait_until_the_clicks_stop(back: Running) -> None:
    base = _base(back, pool_size=4, pool_started=4)

    def pool_running() -> int:
        return sum(c.is_pool and c.state == "running" for c in _clones(back, base))

    wait_until(lambda: pool_running() == 4, 30)
    users = [_user(back.db) for _ in range(4)]
    t0 = utcnow()
    ids = []
    for u in users:  # clicks 0.5 s apart: the queue is empty between them
        ids.append(back.submit("clone", {"user_id": u, "start": True, "client_ip": "10.0.0.7"},
                               machine_id=base, user_id=u))
        time.sleep(0.5)
    reqs = [queue.wait_for(back.db, i, 20) for i in ids]
    assert [r.status for r in reqs] == ["done"] * 4, [r.error for r in reqs]
    got = [back.machine(r.result["machine_id"]) for r in reqs]
    assert all("-pool-" in m.name and m.state == "running" for m in got)  # all from the pool
    last_click = max(r.created_at for r in reqs)
    wait_until(lambda: pool_running() == 4, 30)
    with back.db.sessionmaker() as s:
        refills = [r for r in s.scalars(select(Request).where(
            Request.command == "clone", Request.created_at > t0)) if (r.args or {}).get("pool")]
    assert len(refills) == 4
    first = min(r.created_at for r in refills)
    # before: the keeper refilled between two clicks (right after the first hand-out)
    assert first >= last_click + timedelta(seconds=REFILL_QUIET * 0.9), (first, last_click)
