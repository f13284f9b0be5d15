# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Base policies through the JSON API and the admin page; the user's card notices."""

from __future__ import annotations

from datetime import timedelta

from test_front_support import World, csrf_of, world  # noqa: F401

from ravada.db import Machine, utcnow


def _h(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"X-CSRFToken": csrf_of(c)}


def test_policy_api_validates_and_stores(world: World) -> None:
    w = world
    admin, bob = w.client("admin"), w.client("bob")
    url = f"/api/v1/bases/{w.base}/policy"
    assert admin.get(url).json == {"volatile": False, "pool_size": 0, "pool_started": 0,
                                   "run_timeout": 0, "shutdown_disconnected": False,
                                   "shutdown_grace": 300}
    r = admin.patch(url, json={"volatile": True, "pool_size": 2, "pool_started": 2,
                               "shutdown_disconnected": True, "shutdown_grace": 60},
                    headers=_h(admin))
    assert r.status_code == 200 and r.json["pool_size"] == 2 and r.json["volatile"] is True
    for body, detail in [({"pool_started": 3}, "pool_started (3) cannot exceed pool_size (2)"),
                         ({"shutdown_grace": 1}, "shutdown_grace: an integer from 10"),
                         ({"pool": 1}, "unknown policy field(s): pool")]:
        r = admin.patch(url, json=body, headers=_h(admin))
        assert r.status_code == 422 and detail in r.json["detail"], r.json
    with w.db.sessionmaker() as s:
        base = s.get(Machine, w.base)
        assert (base.volatile, base.pool_size, base.pool_started, base.shutdown_grace) == \
            (True, 2, 2, 60)
    assert bob.get(url).status_code == 403
    assert bob.patch(url, json={"pool_size": 0}, headers=_h(bob)).status_code == 403
    r = admin.patch(f"/api/v1/bases/{w.alice_vm}/policy", json={}, headers=_h(admin))
    assert r.status_code == 409 and "is not a base" in r.json["detail"]
    # the user sees the volatile notice before Start
    page = bob.get("/").get_data(as_text=True)
    assert "your changes are discarded when it shuts down" in page
    assert bob.get("/api/v1/bases").json[0]["volatile"] is True


def test_admin_policy_form(world: World) -> None:
    w = world
    admin = w.client("admin")
    page = admin.get(f"/admin/machines/{w.base}").get_data(as_text=True)
    assert f'action="/admin/machines/{w.base}/policy"' in page
    r = admin.post(f"/admin/machines/{w.base}/policy",
                   data={"csrf_token": csrf_of(admin), "pool_size": "3", "pool_started": "1",
                         "run_timeout": "3600", "shutdown_grace": "120",
                         "shutdown_disconnected": "on", "next": "machine"})
    assert r.status_code == 302 and r.location.endswith(f"/admin/machines/{w.base}")
    page = admin.get(f"/admin/machines/{w.base}").get_data(as_text=True)
    assert "Policy saved." in page
    assert 'name="pool_size" type="number" min="0" max="200" value="3"' in page
    assert 'name="run_timeout" type="number" min="0" max="604800" value="3600"' in page
    r = admin.post(f"/admin/machines/{w.base}/policy",
                   data={"csrf_token": csrf_of(admin), "pool_size": "1", "pool_started": "2"})
    page = admin.get("/admin/machines").get_data(as_text=True)
    assert "pool_started (2) cannot exceed pool_size (1)" in page


def test_card_shows_time_left_and_disconnect_warning(world: World) -> None:
    w = world
    bob = w.client("bob")
    r = bob.post(f"/api/v1/bases/{w.base}/start?wait=10", headers=_h(bob))
    clone_id = r.json["machine_id"]
    now = utcnow()
    with w.db.session() as s:
        base = s.get(Machine, w.base)
        base.run_timeout, base.shutdown_disconnected = 3600, True
        clone = s.get(Machine, clone_id)
        clone.state = "running"
        clone.run_until = now + timedelta(minutes=42, seconds=30)
        clone.idle_until = now + timedelta(minutes=4, seconds=10)
    page = bob.get("/").get_data(as_text=True)
    assert "Time left: 43 min." in page
    assert "It will shut down in 5 min unless you reconnect." in page
    card = bob.get("/api/v1/bases").json[0]
    assert 2540 <= card["run_seconds_left"] <= 2550 and card["connected"] is False
    page = bob.get(f"/machine/{clone_id}").get_data(as_text=True)
    assert "Time left: 43 min." in page
    with w.db.session() as s:
        s.get(Machine, clone_id).clients = 1
    page = bob.get("/").get_data(as_text=True)
    assert "unless you reconnect" not in page


def test_running_limit_setting(world: World) -> None:
    admin = world.client("admin")
    r = admin.patch("/api/v1/settings", json={"max_running_per_user": 2}, headers=_h(admin))
    assert r.status_code == 200 and r.json["max_running_per_user"] == 2
    r = admin.patch("/api/v1/settings", json={"max_running_per_user": -1}, headers=_h(admin))
    assert r.status_code == 422
