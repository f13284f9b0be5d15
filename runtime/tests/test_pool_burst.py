# ruff: noqa: F811  (pytest fixtures imported from test_classroom)
"""A class clicking Start against a pool (libvirt's test driver): every click gets a
running pool clone, and the pool keeper refills only once the clicks stopped."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from test_back import Running, wait_until
from test_classroom import _base, _clones, _user, back  # noqa: F401

from ravada import queue
from ravada.back.pool import REFILL_QUIET, PoolKeeper
from ravada.db import Request, utcnow
from ravada.virt import Guest


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


def test_refills_held_back_at_most_hold_max() -> None:
    keeper = PoolKeeper(None, workers=4, quiet=0.4, hold_max=1.0)  # type: ignore[arg-type]
    assert keeper.budget_now() == 3  # nothing arrived: all workers but one
    t0 = time.monotonic()
    budgets = []
    while time.monotonic() - t0 < 1.6:  # a steady stream: a request every 0.1 s
        keeper.saw_request(1000)
        budgets.append((time.monotonic() - t0, keeper.budget_now()))
        if budgets[-1][1] == 0:  # the daemon wakes when the hold or the quiet ends
            assert 0 < keeper.next_wait(5.0) <= 1.0
        time.sleep(0.1)
    assert all(b == 0 for t, b in budgets if t < 0.9)  # held back ...
    assert all(b == 1 for t, b in budgets if t > 1.1)  # ... then one worker at a time
    keeper.inflight[7] = (1, "clone")
    keeper.saw_request(7)  # the keeper's own request does not hold refills back
    time.sleep(0.5)
    assert keeper.budget_now() == 3 and keeper.next_wait(5.0) == 5.0


def test_a_pool_clone_booting_is_not_started_twice(back: Running,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A refill defines the clone, then boots it (slow on a loaded host): meanwhile the
    keeper must not count it as a stopped clone to start (it queued a second ``start``,
    which failed with "already running" or held a worker on libvirt's state lock)."""
    real_start = Guest.start

    def slow_start(self: Guest) -> None:  # a boot as slow as on a loaded KVM host
        time.sleep(0.6)
        real_start(self)

    monkeypatch.setattr(Guest, "start", slow_start)
    base = _base(back, pool_size=5, pool_started=5)
    wait_until(lambda: sum(c.state == "running" for c in _clones(back, base)) == 5, 30)
    with back.db.sessionmaker() as s:
        reqs = s.execute(select(Request.command, Request.status, Request.error)
                         .where(Request.machine_id != base,
                                Request.command.not_in(("create", "prepare_base")))).all()
    assert reqs == [], reqs  # before: start requests of clones their clone was booting
