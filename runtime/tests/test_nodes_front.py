# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Nodes in the front: /api/v1/nodes, /admin/nodes, the console reaching a node's VNC."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_front_support import World, csrf_of, world  # noqa: F401

from ravada import console
from ravada.db import Machine, Node, utcnow


def _h(c: Any) -> dict[str, str]:
    return {"X-CSRFToken": csrf_of(c)}


def _nodes(w: World) -> tuple[int, int]:
    with w.db.session() as s:
        up = Node(name="up1", heartbeat_at=utcnow(), display_address="up1.example.org",
                  cluster_address="10.1.2.3", mem_total_mb=4096, mem_free_mb=1024, vcpus=8)
        down = Node(name="down1", heartbeat_at=utcnow() - timedelta(seconds=31))
        s.add_all([up, down])
        s.flush()
        s.get(Machine, w.alice_vm).node_id = up.id
        return up.id, down.id


def test_api_lists_nodes_and_patches_enabled_and_draining(world: World) -> None:
    w = world
    up, down = _nodes(w)
    admin = w.client("admin")
    got = {n["name"]: n for n in admin.get("/api/v1/nodes").json}
    assert got["up1"]["state"] == "up" and got["down1"]["state"] == "down"
    assert (got["up1"]["desktops"], got["up1"]["mem_free_mb"], got["up1"]["vcpus"]) == (1, 1024, 8)
    r = admin.patch(f"/api/v1/nodes/{up}", json={"draining": True}, headers=_h(admin))
    assert r.status_code == 200 and r.json["state"] == "draining"
    r = admin.patch(f"/api/v1/nodes/{up}", json={"enabled": False, "draining": False},
                    headers=_h(admin))
    assert r.json["state"] == "disabled" and r.json["enabled"] is False
    for body, field in (({"colour": "red"}, "colour"), ({"enabled": "yes"}, "enabled"),
                        ({"draining": 1}, "draining"), ({}, "enabled")):
        r = admin.patch(f"/api/v1/nodes/{up}", json=body, headers=_h(admin))
        assert r.status_code == 400 and field in r.json["detail"], (body, r.json)
    assert admin.patch("/api/v1/nodes/999", json={"enabled": True},
                       headers=_h(admin)).status_code == 404
    alice = w.client("alice")
    assert alice.get("/api/v1/nodes").status_code == 403
    assert alice.patch(f"/api/v1/nodes/{up}", json={"enabled": True},
                       headers=_h(alice)).status_code == 403
    assert admin.get(f"/api/v1/nodes/{down}").json["state"] == "down"


def test_admin_page_shows_nodes_and_drains(world: World) -> None:
    w = world
    up, _down = _nodes(w)
    admin = w.client("admin")
    page = admin.get("/admin/nodes").get_data(as_text=True)
    assert "up1" in page and "down1" in page and "up1.example.org" in page
    r = admin.post(f"/admin/nodes/{up}", data={"op": "drain", "csrf_token": csrf_of(admin)})
    assert r.status_code == 302
    with w.db.sessionmaker() as s:
        assert s.get(Node, up).draining is True
    r = admin.post(f"/admin/nodes/{up}", data={"op": "explode", "csrf_token": csrf_of(admin)},
                   follow_redirects=True)
    assert "unknown operation" in r.get_data(as_text=True)
    assert w.client("alice").get("/admin/nodes").status_code == 403


def test_console_goes_to_the_machines_node(world: World) -> None:
    w = world
    _nodes(w)
    alice = w.client("alice")
    t = alice.post(f"/api/v1/machines/{w.alice_vm}/console", headers=_h(alice)).json
    claims = console.verify_token(w.app.config["SECRET_KEY"], t["token"])
    assert (claims.host, claims.port) == ("10.1.2.3", 5992)
