# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""The front's side of the queue: timeouts, long-polls woken by notification, the per-user
cap on waits, display requests that are reused or refused at once (stub backend)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event
from test_front_support import World, csrf_of, world  # noqa: F401


def _h(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"X-CSRFToken": csrf_of(c)}


def test_shutdown_timeout_above_the_maximum_is_refused(world: World) -> None:
    alice = world.client("alice")
    url = f"/api/v1/machines/{world.alice_vm}/shutdown"
    r = alice.post(url, json={"timeout": 3600}, headers=_h(alice))
    assert r.status_code == 400
    assert r.json["detail"] == ("timeout: at most 600 s (the configured maximum, "
                                "queue.request_timeout)")
    assert world.requests("shutdown") == []
    r = alice.post(url + "?wait=5", json={"timeout": 30}, headers=_h(alice))
    assert r.status_code == 200 and r.json["status"] == "done"


def _count_queries(world: World) -> Any:
    """Statements the calling thread sends to the database (a list that grows)."""
    seen: list[str] = []
    me = threading.get_ident()

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if threading.get_ident() == me:
            seen.append(statement)

    event.listen(world.db.engine, "before_cursor_execute", count)
    return seen


def test_long_poll_sleeps_until_the_backend_says_the_request_ended(world: World) -> None:
    """Not a query every 10 ms: a 2 s wait on a stuck request reads the row a handful of
    times, and a finish wakes it within milliseconds."""
    w = world
    w.backend.paused.set()
    bob = w.client("bob")
    rid = bob.post(f"/api/v1/bases/{w.base}/start", headers=_h(bob)).json["request_id"]
    seen = _count_queries(w)
    t0 = time.perf_counter()
    assert bob.get(f"/api/v1/requests/{rid}?wait=2").json["status"] == "requested"
    assert 1.9 < time.perf_counter() - t0 < 2.5
    assert len(seen) <= 12, len(seen)  # session/auth reads + one read a second

    def release() -> None:
        time.sleep(0.3)
        w.backend.paused.clear()
        w.backend.waker.interrupt()

    threading.Thread(target=release).start()
    seen.clear()
    t0 = time.perf_counter()
    assert bob.get(f"/api/v1/requests/{rid}?wait=10").json["status"] == "done"
    elapsed = time.perf_counter() - t0
    assert 0.3 < elapsed < 0.6, elapsed
    assert len(seen) <= 10, len(seen)


def test_one_user_cannot_hold_every_front_thread(world: World) -> None:
    w = world
    w.backend.paused.set()
    clients = [w.client("alice") for _ in range(5)]
    rid = clients[0].post(f"/api/v1/machines/{w.alice_vm}/reboot",
                          headers=_h(clients[0])).json["request_id"]
    answers: list[int] = []

    def hold(c: Any) -> None:
        answers.append(c.get(f"/api/v1/requests/{rid}?wait=3").status_code)

    threads = [threading.Thread(target=hold, args=(c,)) for c in clients[:4]]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    r = clients[4].get(f"/api/v1/requests/{rid}?wait=3")
    assert time.perf_counter() - t0 < 0.5
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "at most 4 at once" in r.json["detail"]
    bob = w.client("bob")  # other users are not held up
    bob_rid = bob.post(f"/api/v1/bases/{w.base}/start", headers=_h(bob)).json["request_id"]
    r = bob.get(f"/api/v1/requests/{bob_rid}?wait=0.2")
    assert r.status_code == 200 and r.json["status"] == "requested"
    w.backend.paused.clear()
    w.backend.waker.interrupt()
    for t in threads:
        t.join(5)
    assert answers == [200] * 4
    assert clients[4].get(f"/api/v1/requests/{rid}?wait=1").status_code == 200  # slot freed


def test_display_of_a_machine_shutting_down_answers_at_once(world: World) -> None:
    w = world
    w.backend.paused.set()
    alice = w.client("alice")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/shutdown", headers=_h(alice))
    assert r.status_code == 202
    t0 = time.perf_counter()
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display?wait=5", headers=_h(alice))
    assert time.perf_counter() - t0 < 1.0
    assert r.status_code == 409 and "desk-alice is shutting down" in r.json["detail"]
    assert r.json["state"] == "shutting_down"
    page = alice.post(f"/machine/{w.alice_vm}", headers=_h(alice)).get_data(as_text=True)
    assert "shutting down" in page
    assert w.requests("open_display") == []


def test_display_reloads_reuse_one_open_display(world: World) -> None:
    w = world
    w.backend.paused.set()
    alice = w.client("alice")
    url = f"/api/v1/machines/{w.alice_vm}/display"
    h = _h(alice)
    assert alice.post(url + "?wait=0.2", headers=h).status_code == 503
    assert alice.post(url + "?wait=0.2", headers=h).status_code == 503
    assert len(w.requests("open_display")) == 1  # the pending one is followed again
    w.backend.paused.clear()
    w.backend.waker.interrupt()
    first = alice.post(url + "?wait=5", headers=h)
    assert first.status_code == 200
    for _ in range(3):  # page reloads right after
        again = alice.post(url + "?wait=5", headers=h)
        assert again.status_code == 200 and again.json["password"] == first.json["password"]
    assert len(w.requests("open_display")) == 1
    # another address is another viewer: its own opening
    assert alice.post(url + "?wait=5", headers=h,
                      environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 200
    assert len(w.requests("open_display")) == 2
