# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""rvd_front authentication: proxies, cookies, idle timeout, CSRF, rate limiting, tokens."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from test_front_support import (  # noqa: F401
    PASSWORD,
    World,
    add_user,
    csrf_of,
    login,
    world,
    world_both,
)

from ravada.db import ApiToken, LoginAttempt
from ravada.front.accounts import BAD_LOGIN
from ravada.front.netutil import client_ip, parse_networks
from ravada.front.security import load_secret_key

TRUSTED = parse_networks(["127.0.0.1", "10.1.0.0/16", "::1"])


@pytest.mark.parametrize("peer, xff, expected", [
    ("127.0.0.1", "203.0.113.9", "203.0.113.9"),          # Apache on localhost
    ("198.51.100.7", "203.0.113.9", "198.51.100.7"),      # untrusted peer: header ignored
    ("127.0.0.1", "1.1.1.1, 203.0.113.9", "203.0.113.9"),  # spoofed left part ignored
    ("127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),  # chain of trusted proxies
    ("127.0.0.1", "10.1.2.3", "10.1.2.3"),                 # all trusted: the left-most
    ("127.0.0.1", "garbage, 203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", "203.0.113.9, not-an-ip", "127.0.0.1"),  # malformed hop: stop at the proxy
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", None, "127.0.0.1"),
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # v4-mapped peer
    ("127.0.0.1", "[2001:db8::7]", "2001:db8::7"),
])
def test_client_ip_trusts_forwarded_for_only_from_proxies(peer: str, xff: str | None,
                                                          expected: str) -> None:
    assert client_ip(peer, xff, TRUSTED) == expected


def test_secret_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "front.key"
    key = load_secret_key(str(path))
    assert len(key) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret_key(str(path)) == key


def _cookie(resp) -> str:  # type: ignore[no-untyped-def]
    return next(v for k, v in resp.headers.items()
                if k.lower() == "set-cookie" and v.startswith("ravada_session="))


def test_login_sets_hardened_cookie_and_logout_ends_session(world: World) -> None:
    c = world.app.test_client()
    resp = login(c, "alice")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    cookie = _cookie(resp)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert c.get("/").status_code == 200
    assert c.post("/logout", data={"csrf_token": csrf_of(c)}).status_code == 302
    assert c.get("/").status_code == 302


def test_cookie_is_secure_behind_a_trusted_https_proxy_only(world: World) -> None:
    c = world.app.test_client()
    c.get("/login", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    token = csrf_of(c)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
    resp = c.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token},
                  headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert "Secure" in _cookie(resp)
    with world.db.sessionmaker() as s:
        last = s.scalars(select(LoginAttempt).order_by(LoginAttempt.id.desc())).first()
        assert (last.client_ip, last.ok) == ("203.0.113.5", True)
    # The same headers from an untrusted peer change nothing.
    c2 = world.app.test_client()
    c2.get("/login", environ_base={"REMOTE_ADDR": "198.51.100.1"})
    resp = c2.post("/login", data={"name": "alice", "password": PASSWORD,
                                   "csrf_token": csrf_of(c2)},
                   headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert "Secure" not in _cookie(resp)
    with world.db.sessionmaker() as s:
        last = s.scalars(select(LoginAttempt).order_by(LoginAttempt.id.desc())).first()
        assert last.client_ip == "198.51.100.1"


def test_idle_session_expires(world: World) -> None:
    c = world.client("alice")
    assert c.get("/").status_code == 200
    with c.session_transaction() as sess:
        sess["seen"] = int(time.time()) - world.config.front.session_idle_minutes * 60 - 5
    resp = c.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert c.get("/api/v1/session").status_code == 401


def test_same_message_for_unknown_user_and_bad_password(world: World) -> None:
    c = world.app.test_client()
    unknown = login(c, "nobody", "whatever-password")
    wrong = login(c, "alice", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert BAD_LOGIN in unknown.get_data(as_text=True)
    assert BAD_LOGIN in wrong.get_data(as_text=True)
    api = c.post("/api/v1/session", json={"name": "nobody", "password": "x" * 9})
    assert api.status_code == 401 and api.json["detail"] == BAD_LOGIN


def test_disabled_user_cannot_log_in_and_loses_session(world: World) -> None:
    add_user(world.db, "carol", disabled=True)
    resp = login(world.app.test_client(), "carol")
    assert resp.status_code == 401 and BAD_LOGIN in resp.get_data(as_text=True)
    c = world.client("alice")
    admin = world.client("admin")
    r = admin.patch(f"/api/v1/users/{world.alice}", json={"is_disabled": True},
                    headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code == 200 and r.json["is_disabled"] is True
    assert c.get("/").status_code == 302


def test_login_rate_limit_per_address(world: World) -> None:
    admin = world.client("admin")
    admin.patch("/api/v1/settings", json={"login_max_failures": 3},
                headers={"X-CSRFToken": csrf_of(admin)})
    c = world.app.test_client()
    env = {"REMOTE_ADDR": "198.51.100.20"}
    for _ in range(3):
        r = c.post("/api/v1/session", json={"name": "alice", "password": "bad-password"},
                   environ_base=env)
        assert r.status_code == 401
    # Blocked now, even with the right password; and for unknown names alike.
    r = c.post("/api/v1/session", json={"name": "alice", "password": PASSWORD}, environ_base=env)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    r = c.post("/api/v1/session", json={"name": "ghost", "password": PASSWORD}, environ_base=env)
    assert r.status_code == 429
    # Another address may still log in, as bob and as alice: guesses from one address
    # do not lock the user out everywhere (see test_sessions.py).
    env2 = {"REMOTE_ADDR": "198.51.100.21"}
    assert c.post("/api/v1/session", json={"name": "bob", "password": PASSWORD},
                  environ_base=env2).status_code == 200
    assert c.post("/api/v1/session", json={"name": "alice", "password": PASSWORD},
                  environ_base=env2).status_code == 200
    # The page says it too.
    c3 = world.app.test_client()
    r = login(c3, "alice", environ_base=env)
    assert r.status_code == 429 and "Too many failed logins" in r.get_data(as_text=True)


def test_rate_limit_is_shared_between_workers(world: World) -> None:
    from ravada.front import create_app

    other = create_app(world.config, world.db)  # a second gunicorn worker, same DB
    with world.db.session() as s:
        from ravada.front import settings
        settings.update(s, {"login_max_failures": 2})
    env = {"REMOTE_ADDR": "198.51.100.30"}
    for app in (world.app, other):
        assert app.test_client().post("/api/v1/session", json={
            "name": "bob", "password": "nope-nope"}, environ_base=env).status_code == 401
    assert world.app.test_client().post("/api/v1/session", json={
        "name": "bob", "password": PASSWORD}, environ_base=env).status_code == 429


def test_csrf_required_on_forms_and_cookie_api_calls(world: World) -> None:
    c = world.app.test_client()
    c.get("/login")
    r = c.post("/login", data={"name": "alice", "password": PASSWORD})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = c.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 400
    admin = world.client("admin")
    token = csrf_of(admin)
    for path, data in [("/admin/users", {"name": "eve", "password": "longenough1"}),
                       ("/admin/settings", {"motd": "hi"}),
                       (f"/admin/machines/{world.base}", {"action": "private"}),
                       ("/logout", {})]:
        assert admin.post(path, data=data).status_code == 400, path
    r = admin.post("/api/v1/users", json={"name": "eve", "password": "longenough1"})
    assert r.status_code == 400 and r.json["error"] == "csrf_failed"
    r = admin.post("/api/v1/users", json={"name": "eve", "password": "longenough1"},
                   headers={"X-CSRFToken": "forged"})
    assert r.status_code == 400
    r = admin.post("/api/v1/users", json={"name": "eve", "password": "longenough1"},
                   headers={"X-CSRFToken": token})
    assert r.status_code == 201
    # A token from another session does not work either.
    other = world.client("bob")
    r = admin.post(f"/api/v1/machines/{world.base}/public", json={"public": False},
                   headers={"X-CSRFToken": csrf_of(other)})
    assert r.status_code == 400


def test_api_tokens_bearer_auth_without_csrf(world_both: World) -> None:
    w = world_both
    anon = w.app.test_client()
    r = anon.post("/api/v1/tokens", json={"name": "alice", "password": PASSWORD,
                                          "label": "ci"})
    assert r.status_code == 201
    token = r.json["token"]
    with w.db.sessionmaker() as s:
        rows = s.scalars(select(ApiToken)).all()
        assert len(rows) == 1 and token not in rows[0].token_hash
        assert len(rows[0].token_hash) == 64
    auth = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/v1/session", headers=auth).json["user"]["name"] == "alice"
    r = anon.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5", headers=auth)
    assert r.status_code == 200, r.json
    assert anon.get("/api/v1/machines", headers={"Authorization": "Bearer rvd_nope"}
                    ).status_code == 401
    assert anon.get("/api/v1/machines", headers={"Authorization": "Basic abc"}
                    ).status_code == 401
    # Session users create tokens too (with the CSRF header); tokens can be revoked.
    c = w.client("alice")
    r = c.post("/api/v1/tokens", json={"label": "laptop"},
               headers={"X-CSRFToken": csrf_of(c)})
    assert r.status_code == 201
    listed = c.get("/api/v1/tokens").json
    assert [t["name"] for t in listed] == ["ci", "laptop"] and "token" not in listed[0]
    first = listed[0]["id"]
    assert c.delete(f"/api/v1/tokens/{first}", headers={"X-CSRFToken": csrf_of(c)}
                    ).status_code == 204
    assert anon.get("/api/v1/session", headers=auth).status_code == 401
    # Bob cannot revoke alice's token.
    bob = w.client("bob")
    assert bob.delete(f"/api/v1/tokens/{listed[1]['id']}",
                      headers={"X-CSRFToken": csrf_of(bob)}).status_code == 404
    # A bad password gets no token.
    assert anon.post("/api/v1/tokens", json={"name": "alice", "password": "wrongwrong"}
                     ).status_code == 401


def test_open_redirect_after_login_is_refused(world: World) -> None:
    c = world.app.test_client()
    c.get("/login")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil"):
        r = c.post("/login", data={"name": "alice", "password": PASSWORD, "next": target,
                                   "csrf_token": csrf_of(c)})
        assert r.headers["Location"] == "/", target
    r = c.post("/login", data={"name": "alice", "password": PASSWORD, "next": "/account",
                               "csrf_token": csrf_of(c)})
    assert r.headers["Location"] == "/account"
