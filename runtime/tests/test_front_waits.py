# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""The front's side of the queue: timeouts, long-polls woken by notification, the per-user
cap on waits, display requests that are reused or refused at once (stub backend)."""

from __future__ import annotations

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
