# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""/metrics and /healthz tell outsiders nothing; the body limit is a setting that Apache
mirrors (issue 9, items 4 and 5)."""

from __future__ import annotations

from pathlib import Path

from test_front_support import World, make_config, world  # noqa: F401

from ravada.front import create_app

OUTSIDE = {"REMOTE_ADDR": "198.51.100.7"}
TOKEN = "m" * 24


def test_metrics_only_for_allowed_addresses(world: World) -> None:
    c = world.app.test_client()
    assert c.get("/metrics").status_code == 200  # loopback, the default allow list
    r = c.get("/metrics", environ_base=OUTSIDE)
    assert r.status_code == 403 and b"ravada_" not in r.data
    # Through Apache on loopback: the client Apache reports is what counts, and a
    # client-supplied X-Forwarded-For of 127.0.0.1 does not help.
    r = c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1, 198.51.100.7"})
    assert r.status_code == 403
    r = c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert r.status_code == 200


def test_metrics_with_the_token(tmp_path: Path, world: World) -> None:
    cfg = make_config(tmp_path, str(world.db.engine.url), metrics_token=TOKEN,
                      metrics_allow=["10.0.0.0/8"])
    c = create_app(cfg, db=world.db).test_client()
    assert c.get("/metrics").status_code == 403  # loopback is not in this list
    assert c.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    bad = {"Authorization": "Bearer " + "x" * 24}
    assert c.get("/metrics", headers=bad, environ_base=OUTSIDE).status_code == 403
    good = {"Authorization": f"Bearer {TOKEN}"}
    r = c.get("/metrics", headers=good, environ_base=OUTSIDE)
    assert r.status_code == 200 and b"ravada_machines" in r.data


def test_healthz_outside_says_only_ok_or_fail(world: World) -> None:
    c = world.app.test_client()
    inside = c.get("/healthz")
    assert inside.status_code == 200 and "backend_heartbeat_age_s" in inside.json
    outside = c.get("/healthz", environ_base=OUTSIDE)
    assert outside.status_code == 200 and outside.json == {"status": "ok"}
    world.backend.stop()
    world.backend.stop = lambda: None  # type: ignore[method-assign]
    from ravada.db import Backend
    with world.db.session() as s:
        s.query(Backend).delete()
    outside = c.get("/healthz", environ_base=OUTSIDE)
    assert outside.status_code == 503 and outside.json == {"status": "fail"}


def test_body_limit_is_the_setting(tmp_path: Path, world: World) -> None:
    cfg = make_config(tmp_path, str(world.db.engine.url), max_request_bytes=4096)
    c = create_app(cfg, db=world.db).test_client()
    r = c.post("/api/v1/session", data=b"{" + b" " * 5000 + b"}",
               content_type="application/json")
    assert r.status_code == 413
    r = c.post("/api/v1/session", json={"name": "x" * 10, "password": "y" * 10})
    assert r.status_code == 401
