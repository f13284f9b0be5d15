"""Classroom policies on libvirt's test driver: one desktop per user per base, running
limits, volatile clones, pools, and the deadlines (grace after disconnect, run timeout),
also across a daemon restart. The policy rules themselves are tested as pure functions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from test_back import Running, make_config, start_daemon, stop_daemon, wait_until

from ravada import policy as rp
from ravada import queue
from ravada.db import Database, Machine, Request, Setting, User, utcnow

# -- the rules (pure) ---------------------------------------------------------------------


def test_check_policy() -> None:
    p = rp.check_policy(rp.Policy(), {"volatile": "on", "pool_size": "3", "pool_started": 2,
                                      "run_timeout": 3600, "shutdown_disconnected": True,
                                      "shutdown_grace": 60})
    assert p == rp.Policy(True, 3, 2, 3600, True, 60)
    for changes, message in [
        ({"pool_size": 1, "pool_started": 2}, "pool_started (2) cannot exceed pool_size (1)"),
        ({"pool_size": -1}, "pool_size: an integer from 0 to 200"),
        ({"pool_size": True}, "pool_size: an integer"),
        ({"shutdown_grace": 5}, "shutdown_grace: an integer from 10 to 86400"),
        ({"volatile": "maybe"}, "volatile: true or false"),
        ({"colour": 1}, "unknown policy field(s): colour"),
    ]:
        with pytest.raises(rp.PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
            rp.check_policy(rp.Policy(), changes)


def test_pool_work_and_limits() -> None:
    pol = rp.Policy(pool_size=3, pool_started=2)
    assert rp.pool_work(pol, rp.PoolCounts()) == rp.PoolWork(create=3, start=2)
    assert rp.pool_work(pol, rp.PoolCounts(made=2, running=2, creating=1)) == \
        rp.PoolWork(create=0, start=0)
    assert rp.pool_work(pol, rp.PoolCounts(made=3, running=1)) == rp.PoolWork(0, 1)
    assert rp.running_limit(2) == 2 and rp.running_limit(2, [1, 3]) == 3
    assert rp.running_limit(2, [1, 0]) == 0
    assert rp.over_limit(1, 2) is None and rp.over_limit(5, 0) is None
    assert "limit is 2 (max_running_per_user)" in (rp.over_limit(2, 2) or "")
    assert rp.pool_name("b" * 70, 12) == "b" * 56 + "-pool-12"


def test_deadlines_and_notices() -> None:
    now = datetime(2026, 12, 1, 9, 0)
    pol = rp.Policy(volatile=True, run_timeout=3600, shutdown_disconnected=True,
                    shutdown_grace=120)
    assert rp.run_deadline(pol, now) == now + timedelta(hours=1)
    assert rp.idle_deadline(pol, now) == now + timedelta(minutes=2)
    assert rp.idle_deadline(rp.Policy(), now) is None
    assert rp.next_deadline([None, now, now - timedelta(1)]) == now - timedelta(1)
    before = rp.notices(pol, running=False, connected=False, run_until=None, idle_until=None,
                        now=now)
    assert before == ["This desktop is volatile: your changes are discarded when it shuts "
                      "down."]
    out = rp.notices(pol, running=True, connected=False, now=now,
                     run_until=now + timedelta(minutes=4), idle_until=now + timedelta(seconds=90))
    assert "Time is almost up: it shuts down in 4 min. Save your work." in out
    assert "It will shut down in 2 min unless you reconnect." in out


# -- the backend on the test driver --------------------------------------------------------


@pytest.fixture
def back(tmp_path: Path, db: Database) -> Iterator[Running]:
    r = start_daemon(make_config(tmp_path, db.url, workers=4), db, tmp_path)
    yield r
    stop_daemon(r)


def _user(db: Database, prefix: str = "u") -> int:
    with db.session() as s:
        u = User(name=prefix + uuid.uuid4().hex[:6])
        s.add(u)
        s.flush()
        return u.id


def _base(back: Running, **policy: Any) -> int:
    name = "b" + uuid.uuid4().hex[:8]
    base = back.ok("create", {"name": name, "disk_gb": 1, "memory_mb": 256})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    if policy:
        with back.db.session() as s:
            s.execute(update(Machine).where(Machine.id == base).values(**policy))
    return base


def _clones(back: Running, base: int) -> list[Machine]:
    with back.db.sessionmaker() as s:
        return list(s.scalars(select(Machine).where(Machine.base_id == base)
                              .order_by(Machine.id)))


def test_unique_clone_per_user_and_base(db: Database) -> None:
    with db.session() as s:
        u = User(name="solo")
        base = Machine(name="base1", is_base=True)
        s.add_all([u, base])
        s.flush()
        s.add(Machine(name="c1", base_id=base.id, owner_id=u.id))
        pool = [Machine(name=f"p{i}", base_id=base.id, is_pool=True) for i in range(2)]
        s.add_all(pool)  # pool clones have no owner: any number
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Machine(name="c2", base_id=base.id, owner_id=u.id))


def test_eight_parallel_clicks_make_one_clone(back: Running) -> None:
    base, alice = _base(back), _user(back.db)
    ids = [back.submit("clone", {"user_id": alice, "start": True, "client_ip": "10.0.0.9"},
                       machine_id=base, user_id=alice) for _ in range(8)]
    reqs = [queue.wait_for(back.db, i, 30) for i in ids]
    assert [r.status for r in reqs] == ["done"] * 8, [r.error for r in reqs]
    assert len({r.result["machine_id"] for r in reqs}) == 1
    clones = _clones(back, base)
    assert [(c.owner_id, c.state) for c in clones] == [(alice, "running")]
    assert [n for n in back.guests() if n.startswith(clones[0].name)] == [clones[0].name]


def test_running_limit(back: Running) -> None:
    base_a, base_b, bob = _base(back), _base(back), _user(back.db)
    with back.db.session() as s:
        s.add(Setting(key="max_running_per_user", value=1))
    first = back.ok("clone", {"user_id": bob, "start": True}, machine_id=base_a)["machine_id"]
    guests = back.guests()
    error = back.fails("clone", {"user_id": bob, "start": True}, machine_id=base_b)
    assert error == ("you already have 1 machine(s) running and the limit is 1 "
                     "(max_running_per_user): shut one down first")
    assert _clones(back, base_b) == [] and back.guests() == guests  # nothing was made
    # a clone made earlier, shut down, is not started past the limit either
    back.ok("force_shutdown", machine_id=first)
    second = back.ok("clone", {"user_id": bob, "start": True}, machine_id=base_b)["machine_id"]
    assert "limit is 1" in back.fails("start", machine_id=first)
    assert back.machine(first).state == "shutdown"
    back.ok("force_shutdown", machine_id=second)
    back.ok("start", machine_id=first)


def _gone(back: Running, machine: Machine) -> bool:
    return back.machine(machine.id) is None and machine.name not in back.guests() \
        and f"{machine.name}.qcow2" not in back.volumes()


def test_volatile_clone_removed_when_it_stops(back: Running) -> None:
    base, carol = _base(back, volatile=True), _user(back.db)
    mid = back.ok("clone", {"user_id": carol, "client_ip": "10.0.0.5"},
                  machine_id=base)["machine_id"]
    clone = back.machine(mid)
    assert clone.volatile and clone.state == "running"
    assert "cannot hibernate" in back.fails("hibernate", machine_id=mid)
    back.ok("shutdown", {"timeout": 5}, machine_id=mid)
    wait_until(lambda: _gone(back, clone), 10)
    # stopped behind our back (libvirt directly): removed too
    mid = back.ok("clone", {"user_id": carol, "start": True}, machine_id=base)["machine_id"]
    clone = back.machine(mid)
    back.host.conn().lookupByName(clone.name).destroy()
    wait_until(lambda: _gone(back, clone), 10)
    assert back.machine(base).is_base
    # the base carries the policy flag, not the fate: a refresh keeps it (it once queued
    # the removal of every stopped volatile base)
    back.ok("refresh")
    with back.db.sessionmaker() as s:
        assert not s.scalars(select(Request.id).where(
            Request.machine_id == base, Request.command == "remove")).all()
    assert back.machine(base).is_base


def test_pool_hands_out_and_refills(back: Running) -> None:
    base, dave = _base(back, pool_size=3, pool_started=2), _user(back.db)

    def pool_state() -> tuple[int, int]:
        pool = [c for c in _clones(back, base) if c.is_pool]
        return len(pool), sum(c.state == "running" for c in pool)

    wait_until(lambda: pool_state() == (3, 2), 20)
    names = {c.name for c in _clones(back, base)}
    assert all("-pool-" in n for n in names)
    with back.db.sessionmaker() as s:  # refills run side by side: none lost a name race
        assert not s.scalars(select(Request.error).where(
            Request.command == "clone", Request.status == "failed")).all()
    res = back.ok("clone", {"user_id": dave, "client_ip": "10.0.0.8"}, machine_id=base)
    got = back.machine(res["machine_id"])
    assert got.name in names and got.owner_id == dave and not got.is_pool
    assert got.state == "running" and res["display"]["password"]
    wait_until(lambda: pool_state() == (3, 2), 20)
    assert len(_clones(back, base)) == 4
    # a smaller pool: the keeper removes the extra unassigned clones
    with back.db.session() as s:
        s.execute(update(Machine).where(Machine.id == base).values(pool_size=1,
                                                                   pool_started=1))
    queue.notify(back.cfg.queue.socket)
    wait_until(lambda: pool_state() == (1, 1), 20)
    with back.db.session() as s:  # no pool at all: every unassigned clone goes
        s.execute(update(Machine).where(Machine.id == base).values(pool_size=0,
                                                                   pool_started=0))
    queue.notify(back.cfg.queue.socket)
    wait_until(lambda: pool_state() == (0, 0), 20)
    assert [c.owner_id for c in _clones(back, base)] == [dave]


def _running_clone(back: Running, **policy: Any) -> Machine:
    base, user = _base(back, **policy), _user(back.db)
    mid = back.ok("clone", {"user_id": user, "start": True}, machine_id=base)["machine_id"]
    return back.machine(mid)


def test_shutdown_after_disconnect_grace(back: Running) -> None:
    clone = _running_clone(back, shutdown_disconnected=True, shutdown_grace=1)
    assert clone.idle_until is not None  # started, nobody connected: the grace runs
    sink = back.daemon._sink
    sink.graphics(clone.name, "connect")
    wait_until(lambda: back.machine(clone.id).clients == 1)
    assert back.machine(clone.id).idle_until is None
    time.sleep(1.5)
    assert back.machine(clone.id).state == "running"  # connected: no deadline
    sink.graphics(clone.name, "disconnect")
    wait_until(lambda: back.machine(clone.id).idle_until is not None)
    sink.graphics(clone.name, "connect")  # back within the grace
    time.sleep(1.5)
    assert back.machine(clone.id).state == "running"
    sink.graphics(clone.name, "disconnect")
    t0 = time.monotonic()
    wait_until(lambda: back.machine(clone.id).state == "shutdown", 10)
    assert 0.8 < time.monotonic() - t0 < 5
    m = back.machine(clone.id)
    assert (m.idle_until, m.run_until, m.clients) == (None, None, 0)
    with back.db.sessionmaker() as s:
        why = s.scalar(select(Request.args).where(Request.machine_id == clone.id,
                                                  Request.command == "shutdown"))
    assert why == {"reason": "disconnected"}


def test_run_timeout_stops_the_machine(back: Running) -> None:
    clone = _running_clone(back, run_timeout=1)
    assert clone.run_until is not None and clone.started_at is not None
    assert (clone.run_until - clone.started_at).total_seconds() == pytest.approx(1, abs=0.1)
    wait_until(lambda: back.machine(clone.id).state == "shutdown", 10)


def test_deadlines_survive_a_restart(tmp_path: Path, db: Database) -> None:
    cfg = make_config(tmp_path, db.url, workers=4)
    keep = libvirt.open("test:///default")  # the test driver forgets all when nobody is open
    first = start_daemon(cfg, db, tmp_path)
    try:
        clone = _running_clone(first, run_timeout=3600)
    finally:
        stop_daemon(first)
    soon = utcnow() + timedelta(seconds=1)
    with db.session() as s:
        s.execute(update(Machine).where(Machine.id == clone.id).values(run_until=soon))
    second = start_daemon(cfg, db, tmp_path / "2")
    try:
        wait_until(lambda: second.machine(clone.id).state == "shutdown", 10)
        assert utcnow() >= soon
    finally:
        stop_daemon(second)
        keep.close()


def test_concurrent_pool_takes_are_distinct(back: Running) -> None:
    base = _base(back, pool_size=4, pool_started=4)
    wait_until(lambda: sum(c.state == "running" and c.is_pool
                           for c in _clones(back, base)) == 4, 20)
    users = [_user(back.db) for _ in range(4)]
    out: list[Any] = []
    threads = [threading.Thread(target=lambda u=u: out.append(
        back.ok("clone", {"user_id": u, "start": True}, machine_id=base)["machine_id"]))
        for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 4
    owners = {c.owner_id for c in _clones(back, base) if c.id in out}
    assert owners == set(users)


def test_refills_wait_for_user_clicks(back: Running) -> None:
    """User clicks go first: the keeper queues a refill only once no click waits."""
    base = _base(back, pool_size=2, pool_started=2)
    wait_until(lambda: sum(c.state == "running" and c.is_pool
                           for c in _clones(back, base)) == 2, 20)
    users = [_user(back.db) for _ in range(6)]
    with back.db.session() as s:  # six clicks in one go: more than the pool and the workers
        ids = [queue.enqueue(s, "clone", {"user_id": u, "start": True}, machine_id=base,
                             user_id=u).id for u in users]
    queue.notify(back.cfg.queue.socket)
    reqs = [queue.wait_for(back.db, i, 30) for i in ids]
    assert [r.status for r in reqs] == ["done"] * 6, [r.error for r in reqs]
    last_claim = max(r.started_at for r in reqs)
    wait_until(lambda: sum(c.state == "running" and c.is_pool
                           for c in _clones(back, base)) == 2, 20)
    with back.db.sessionmaker() as s:
        refills = [r for r in s.scalars(select(Request).where(Request.command == "clone",
                                                             Request.id > max(ids)))
                   if (r.args or {}).get("pool")]
    assert refills and min(r.created_at for r in refills) >= last_claim
