# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Every route of rvd_front: coverage, the authorization matrix, hostile input, OpenAPI."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_front_support import World, csrf_of, world  # noqa: F401

from ravada.auth import groups
from ravada.db import Iso, Node, Request

STATIC_ARGS = {"filename": "style.css"}


def _rules(w: World) -> list[tuple[str, str, Any]]:
    """(method, rule, endpoint) for every route."""
    out = []
    for rule in w.app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, rule.rule, rule))
    return out


def _url(w: World, rule: Any, ids: dict[str, int]) -> str:
    values: dict[str, Any] = {}
    for arg in rule.arguments:
        if arg == "filename":
            values[arg] = "core/rfb.js" if rule.endpoint == "user.novnc" else "style.css"
        elif arg == "section":  # the machine page's hardware forms
            values[arg] = "size"
        else:
            values[arg] = ids[arg]
    with w.app.test_request_context():
        from flask import url_for
        return url_for(rule.endpoint, **values)


def _send(c: FlaskClient, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    token = csrf_of(c) if method != "GET" else ""
    if url.startswith("/api/"):
        return c.open(url, method=method, json=body or {}, headers={"X-CSRFToken": token})
    return c.open(url, method=method, data={**(body or {}), "csrf_token": token})


def _alice_ids(w: World) -> dict[str, int]:
    """Ids of things that belong to alice."""
    c = w.client("alice")
    tok = c.post("/api/v1/tokens", json={"label": "x"}, headers={"X-CSRFToken": csrf_of(c)})
    req = c.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5",
                 headers={"X-CSRFToken": csrf_of(c)})
    with w.db.session() as s:
        group_id = groups.create_group(s, "alice-group").id
        groups.set_member(s, group_id, w.alice, True)
        iso = Iso(name="failed.iso", state="failed", source="upload", size=10)
        s.add(iso)
        s.flush()
        iso_id = iso.id
        node = Node(name="node-" + str(iso_id))
        s.add(node)
        s.flush()
        node_id = node.id
    return {"iso_id": iso_id, "node_id": node_id, "machine_id": w.alice_vm,
            "base_id": w.private_base,
            "user_id": w.alice, "token_id": tok.json["id"], "req_id": req.json["request_id"],
            "group_id": group_id}


PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.login_post", "auth.logout", "user.novnc",
                    "oidc.start", "oidc.callback",
                    "ops.healthz", "ops.metrics", "api.openapi", "api.session_login",
                    "api.tokens_create", "api.session_logout",
                    "totp.login_code", "totp.login_code_post", "i18n.set_language"}
ADMIN_API = {"api.machines_create", "api.machine_public", "api.machine_prepare_base",
             "api.machine_remove_base", "api.isos_list", "api.users_list", "api.users_create",
             "api.users_update", "api.settings_get", "api.settings_update",
             "api.base_policy_get", "api.base_policy_update",
             "api.groups_list", "api.groups_create", "api.groups_delete", "api.groups_member_add",
             "api.groups_member_remove", "api.base_access_get", "api.base_access_put",
             "api.users_totp_reset", "api.nodes_list", "api.nodes_get", "api.nodes_update",
             "api.machine_hardware_get", "api.machine_hardware_update"}


def test_every_route_answers_without_server_errors(world: World) -> None:
    """Admin and owner hit every route; nothing is a 5xx (503 = backend busy is allowed)."""
    ids = _alice_ids(world)
    seen = set()
    for who in ("admin", "alice"):
        c = world.client(who)
        for method, _rule, rule in _rules(world):
            if rule.endpoint in ("auth.logout", "api.session_logout"):
                continue
            url = _url(world, rule, ids)
            resp = _send(c, method, url)
            assert resp.status_code < 500, (who, method, url, resp.get_data(as_text=True)[:300])
            seen.add((method, rule.rule))
    assert len(seen) == len(_rules(world)) - 2


def test_user_b_cannot_see_or_touch_user_a_things(world: World) -> None:
    ids = _alice_ids(world)
    bob = world.client("bob")
    checked = 0
    for method, _r, rule in _rules(world):
        if not set(rule.arguments) & {"machine_id", "req_id", "token_id", "user_id", "base_id"}:
            continue
        url = _url(world, rule, ids)
        resp = _send(bob, method, url)
        admin_only = rule.endpoint.startswith(("admin.", "live."))
        expected = (403,) if rule.endpoint in ADMIN_API or admin_only else (404,)
        assert resp.status_code in expected, (method, url, resp.status_code)
        body = resp.get_data(as_text=True)
        assert "desk-alice" not in body and "Pwxxx" not in body
        checked += 1
    assert checked >= 20
    with world.db.sessionmaker() as s:
        assert s.query(Request).filter(Request.user_id == world.bob).count() == 0
    # Lists show bob nothing of alice's.
    assert bob.get("/api/v1/machines").json == []
    assert bob.get("/api/v1/requests").json == []
    assert [b["name"] for b in bob.get("/api/v1/bases").json] == ["desk"]
    assert bob.get("/api/v1/bases").json[0]["clone"] is None


def test_non_admins_get_403_on_admin_routes(world: World) -> None:
    ids = _alice_ids(world)
    for who in ("alice", "bob"):
        c = world.client(who)
        for method, _r, rule in _rules(world):
            if not (rule.endpoint.startswith(("admin.", "isos.", "isos_data."))
                    or rule.endpoint in ADMIN_API):
                continue
            resp = _send(c, method, _url(world, rule, ids))
            assert resp.status_code == 403, (who, method, rule.rule)


def test_anonymous_is_redirected_or_gets_401(world: World) -> None:
    ids = _alice_ids(world)
    c = world.app.test_client()
    for method, _r, rule in _rules(world):
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = _url(world, rule, ids)
        resp = _send(c, method, url)
        if url.startswith("/api/"):
            assert resp.status_code == 401, (method, url)
            assert resp.json["error"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        elif method == "GET":
            assert resp.status_code == 302 and "/login" in resp.headers["Location"], url
        else:
            assert resp.status_code in (302, 400), (method, url)  # no session: no CSRF token
    r = c.post("/api/v1/tokens", json={})
    assert r.status_code == 401


def _api_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def test_openapi_document_matches_the_routes(world: World) -> None:
    doc = world.app.test_client().get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    real = {(_api_path(r.rule), m) for m, _x, r in _rules(world) if r.rule.startswith("/api/v1")}
    assert documented == real
    for path, ops in doc["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path))


HOSTILE = ["A" * 5000, "ñandú 🖥️ ديسك", "'; DROP TABLE users; --", "\" OR 1=1 --",
           "<script>alert(1)</script>", "a\x00b", "../../etc/passwd", "%s%n%x", "", " ",
           12345, -1, 2**70, 1.5, None, True, [], {}, ["x"], {"$gt": ""}]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:20])
def test_hostile_input_never_gives_500(world: World, value: Any) -> None:
    admin, anon = world.client("admin"), world.app.test_client()
    token = csrf_of(admin)
    h = {"X-CSRFToken": token}
    calls = [
        (anon, "POST", "/api/v1/session", {"name": value, "password": value}),
        (anon, "POST", "/api/v1/tokens", {"name": value, "password": value}),
        (admin, "POST", "/api/v1/tokens", {"label": value}),
        (admin, "POST", "/api/v1/users", {"name": value, "password": value, "is_admin": value}),
        (admin, "PATCH", f"/api/v1/users/{world.bob}", {"is_admin": value}),
        (admin, "PATCH", f"/api/v1/users/{world.bob}", {"password": value}),
        (admin, "PATCH", "/api/v1/settings", {"motd": value}),
        (admin, "PATCH", "/api/v1/settings", {"login_max_failures": value}),
        (admin, "PATCH", "/api/v1/settings", {"console_ws_url": value}),
        (admin, "PATCH", "/api/v1/settings", {value if isinstance(value, str) else "x": 1}),
        (admin, "POST", "/api/v1/machines", {"name": value, "iso": value, "memory_mb": value}),
        (admin, "POST", "/api/v1/machines", {"name": "ok1", "vcpus": value}),
        (admin, "POST", f"/api/v1/machines/{world.base}/public", {"public": value}),
        (admin, "PATCH", f"/api/v1/bases/{world.base}/policy", {"pool_size": value}),
        (admin, "PATCH", f"/api/v1/bases/{world.base}/policy", {"volatile": value}),
        (admin, "POST", f"/api/v1/machines/{world.alice_vm}/shutdown", {"timeout": value}),
        (admin, "POST", "/api/v1/password", {"password": value, "new_password": value}),
        (admin, "POST", "/admin/isos/data/uploads", {"name": value, "size": value}),
        (admin, "POST", "/admin/isos/data/uploads", {"name": "ok.iso", "size": value,
                                                     "sha256": value}),
    ]
    for client, method, url, body in calls:
        resp = client.open(url, method=method, json=body, headers=h)
        assert resp.status_code < 500, (url, body, resp.get_data(as_text=True)[:200])
        if resp.status_code >= 400:
            assert set(resp.json) >= {"error", "detail"}
    text = value if isinstance(value, str) else str(value)
    for url in (f"/api/v1/requests?status={text[:200]}", f"/api/v1/requests?limit={text[:50]}",
                f"/api/v1/requests/1?wait={text[:50]}",
                f"/api/v1/machines/{world.alice_vm}/display?wait={text[:50]}"):
        assert admin.get(url).status_code < 500, url
    resp = anon.post("/login", data={"name": text, "password": text, "csrf_token": csrf_of(anon)})
    assert resp.status_code in (400, 401, 429)
    forms = [("/admin/users", {"name": text, "password": text}),
             ("/admin/settings", {"motd": text, "login_max_failures": text}),
             ("/admin/machines", {"name": text, "iso": text, "memory_mb": text}),
             (f"/admin/users/{world.bob}", {"op": text, "password": text}),
             (f"/admin/machines/{world.base}", {"action": text}),
             ("/admin/isos/url", {"name": text, "url": text, "sha256": text})]
    for url, data in forms:
        resp = admin.post(url, data={**data, "csrf_token": token})
        assert resp.status_code in (302, 400, 413), (url, resp.status_code)


@pytest.mark.parametrize("raw, ctype", [
    (b"not json", "application/json"), (b"[1, 2]", "application/json"),
    (b"\xff\xfe\xfa", "application/json"), (b'"string"', "application/json"),
    (b"name=x", "application/x-www-form-urlencoded"), (b"{" * 5000, "application/json"),
])
def test_malformed_bodies_are_400(world: World, raw: bytes, ctype: str) -> None:
    admin = world.client("admin")
    h = {"X-CSRFToken": csrf_of(admin), "Content-Type": ctype}
    for url in ("/api/v1/users", "/api/v1/machines", "/api/v1/session"):
        resp = admin.post(url, data=raw, headers=h)
        assert resp.status_code == 400, (url, raw[:20], resp.status_code)
        assert resp.json["error"] in ("bad_request",)


@pytest.mark.parametrize("path", ["/api/v1/machines/0", "/api/v1/machines/99999999999",
                                  "/api/v1/machines/-1", "/api/v1/machines/abc",
                                  "/api/v1/machines/2147483648", "/api/v1/requests/1e3",
                                  "/machine/99999999999", "/api/v1/nope", "/nope",
                                  "/novnc/../../etc/passwd", "/novnc/%2e%2e/%2e%2e/etc/passwd"])
def test_bad_ids_and_paths_are_404(world: World, path: str) -> None:
    resp = world.client("admin").get(path)
    assert resp.status_code == 404, path
    if path.startswith("/api/"):
        assert resp.json["error"] == "not_found"


def test_wrong_method_is_405_json(world: World) -> None:
    resp = world.client("admin").delete("/api/v1/machines")
    assert resp.status_code == 405 and resp.json["error"] == "method_not_allowed"


def test_html_is_escaped_everywhere_it_is_shown(world: World) -> None:
    admin = world.client("admin")
    evil = "<script>alert('x')</script>"
    r = admin.patch("/api/v1/settings", json={"motd": evil, "site_title": "<b>T</b>"},
                    headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code == 200
    world.backend.fail["screenshot"] = evil
    admin.post(f"/api/v1/machines/{world.alice_vm}/screenshot?wait=5",
               headers={"X-CSRFToken": csrf_of(admin)})
    for url in ("/", "/admin/requests", "/admin/settings", "/account"):
        html = admin.get(url).get_data(as_text=True)
        assert evil not in html and "<b>T</b>" not in html, url
    assert "&lt;script&gt;" in admin.get("/").get_data(as_text=True)
    assert "&lt;script&gt;" in admin.get("/admin/requests").get_data(as_text=True)
    r = admin.post("/api/v1/users", json={"name": evil, "password": "longenough"},
                   headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code == 422
