"""The request queue: atomic claims, per-machine serialisation, wake-up latency."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from ravada import queue
from ravada.db import Database, Machine, Request
from ravada.db.migrate import current_revision, head_revision, upgrade


def test_migrations_are_idempotent(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    assert upgrade(db.engine) == (head_revision(), head_revision())


def test_claim_takes_oldest_and_finish_records_outcome(db: Database) -> None:
    with db.session() as s:
        first = queue.enqueue(s, "start", {"x": 1}).id
        second = queue.enqueue(s, "shutdown").id
    assert queue.claim(db, "w1") == first
    assert queue.claim(db, "w1") == second
    assert queue.claim(db, "w1") is None
    queue.finish(db, first, result={"ok": True})
    queue.finish(db, second, error="boom")
    with db.session() as s:
        a, b = s.get(Request, first), s.get(Request, second)
        assert (a.status, a.result, a.attempts, a.worker) == ("done", {"ok": True}, 1, "w1")
        assert (b.status, b.error) == ("failed", "boom")
        assert a.started_at is not None and a.finished_at >= a.started_at


def test_one_request_per_machine_at_a_time(db: Database) -> None:
    with db.session() as s:
        m = Machine(name="m1")
        s.add(m)
        s.flush()
        r1 = queue.enqueue(s, "start", machine_id=m.id).id
        r2 = queue.enqueue(s, "shutdown", machine_id=m.id).id
        r3 = queue.enqueue(s, "start").id
    assert queue.claim(db, "w") == r1
    assert queue.claim(db, "w") == r3  # r2 waits: its machine is busy
    assert queue.claim(db, "w") is None
    queue.finish(db, r1, result={})
    assert queue.claim(db, "w") == r2


def test_concurrent_claimers_never_share_a_request(db: Database) -> None:
    n = 60
    with db.session() as s:
        ids = {queue.enqueue(s, "noop").id for _ in range(n)}
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        # A second engine per thread group mimics a second rvd_back process.
        other = Database(db.url)
        while (rid := queue.claim(other, name)) is not None:
            with lock:
                claimed.append(rid)
        other.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert len(claimed) == len(set(claimed))


def test_notify_wakes_a_waiter_fast(tmp_path: Path) -> None:
    sock = str(tmp_path / "q.sock")
    assert queue.notify(sock) is False  # nobody listens: the writer carries on
    waker = queue.Waker(sock)
    try:
        latencies = []
        for _ in range(20):
            t0 = time.perf_counter()
            threading.Timer(0.0, queue.notify, args=(sock,)).start()
            assert waker.wait(2.0)
            latencies.append(time.perf_counter() - t0)
        assert statistics.median(latencies) < 0.02
        t0 = time.perf_counter()
        assert waker.wait(0.05) is False
        assert time.perf_counter() - t0 >= 0.04
    finally:
        waker.close()


def test_wait_for_returns_when_finished(sqlite_db: Database) -> None:
    rid = queue.submit(sqlite_db, "/nonexistent.sock", "noop")
    assert queue.claim(sqlite_db, "w") == rid
    threading.Timer(0.05, queue.finish, args=(sqlite_db, rid), kwargs={"result": {"v": 1}}).start()
    t0 = time.perf_counter()
    req = queue.wait_for(sqlite_db, rid, timeout=5)
    assert req.status == "done" and req.result == {"v": 1}
    assert time.perf_counter() - t0 < 1


def test_clones_of_one_base_run_together_but_not_with_other_requests(db: Database) -> None:
    with db.session() as s:
        base = Machine(name="base1", is_base=True)
        s.add(base)
        s.flush()
        c1 = queue.enqueue(s, "clone", machine_id=base.id).id
        c2 = queue.enqueue(s, "clone", machine_id=base.id).id
        prep = queue.enqueue(s, "remove_base", machine_id=base.id).id
        c3 = queue.enqueue(s, "clone", machine_id=base.id).id
    assert queue.claim(db, "w") == c1
    assert queue.claim(db, "w") == c2  # a second clone of the base runs alongside
    assert queue.claim(db, "w") is None  # remove_base waits; c3 may not overtake it
    queue.finish(db, c1, result={})
    assert queue.claim(db, "w") is None
    queue.finish(db, c2, result={})
    assert queue.claim(db, "w") == prep
    assert queue.claim(db, "w") is None  # c3 waits for remove_base
    queue.finish(db, prep, result={})
    assert queue.claim(db, "w") == c3
