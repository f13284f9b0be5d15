# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Accounts and sessions: throttling that cannot lock a user out, revocable sessions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from test_front_support import PASSWORD, World, csrf_of, login, world  # noqa: F401

from ravada import passwords
from ravada.db import LoginAttempt, Request, Setting, User

API = "/api/v1/session"


def _set(w: World, **values: Any) -> None:
    with w.db.session() as s:  # rows as the settings page stores them
        for key, value in values.items():
            s.merge(Setting(key=key, value=value))


def _try(w: World, name: str, password: str, ip: str) -> int:
    return w.app.test_client().post(API, json={"name": name, "password": password},
                                    environ_base={"REMOTE_ADDR": ip}).status_code


def test_failed_logins_from_one_address_do_not_lock_the_user_out(world: World) -> None:
    _set(world, login_account_free=10)  # no per-account slowdown before the address limit
    attacker, office = "198.51.100.20", "198.51.100.21"
    for _ in range(10):  # login_max_failures, all against alice
        assert _try(world, "alice", "guess-guess", attacker) == 401
    assert _try(world, "alice", PASSWORD, attacker) == 429  # that address is blocked
    assert _try(world, "bob", PASSWORD, attacker) == 429    # for every name
    assert _try(world, "alice", PASSWORD, office) == 200    # the real alice, elsewhere: in


def test_ipv6_addresses_are_throttled_per_64(world: World) -> None:
    _set(world, login_max_failures=5)
    for n in range(1, 6):  # five hosts of one /64, five different names
        assert _try(world, f"ghost{n}", "guess-guess", f"2001:db8:1:2::{n:x}") == 401
    assert _try(world, "bob", PASSWORD, "2001:db8:1:2:ffff::9") == 429
    assert _try(world, "bob", PASSWORD, "2001:db8:1:3::1") == 200  # the next /64 is clean
    from ravada.front.throttle import network_of

    assert network_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert network_of("::ffff:192.0.2.7") == "192.0.2.7"
    with world.db.sessionmaker() as s:
        assert {r.client_ip for r in s.scalars(select(LoginAttempt))} == \
            {"2001:db8:1:2::/64", "2001:db8:1:3::/64"}


def test_an_account_under_attack_slows_down_guessing_addresses_only(world: World) -> None:
    _set(world, login_account_free=3)
    for ip in ("198.51.100.40", "198.51.100.41", "198.51.100.42"):
        assert _try(world, "alice", "guess-guess", ip) == 401
    r = world.app.test_client().post(API, json={"name": "alice", "password": PASSWORD},
                                     environ_base={"REMOTE_ADDR": "198.51.100.42"})
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
    assert _try(world, "bob", PASSWORD, "198.51.100.42") == 200  # other names: not slowed
    assert _try(world, "alice", PASSWORD, "198.51.100.50") == 200  # a clean address: in
    time.sleep(1.1)  # the delay (2**0 s) is over: the guesser gets one more try
    assert _try(world, "alice", "guess-guess", "198.51.100.42") == 401
    assert _try(world, "alice", "guess-guess", "198.51.100.42") == 429  # now 2 s


@pytest.fixture
def lock_probe(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Each argon2 check records whether another writer could take the SQLite write lock.

    The stub backend is stopped first: its heartbeat is a writer of its own, and a probe
    that met it (on a loaded host) blamed the hashing."""
    world.backend.stop()
    path = world.db.engine.url.database
    seen: list[bool] = []
    real = passwords.verify_password

    def probing(stored: str, password: str) -> bool:
        con = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            seen.append(True)
        except sqlite3.OperationalError:
            seen.append(False)  # "database is locked": the hashing held the write lock
        finally:
            con.close()
        return real(stored, password)

    monkeypatch.setattr(passwords, "verify_password", probing)
    yield seen


def test_password_hashing_does_not_hold_the_write_lock(world: World,
                                                       lock_probe: list[bool]) -> None:
    assert _try(world, "alice", PASSWORD, "198.51.100.60") == 200
    assert _try(world, "alice", "wrong-wrong", "198.51.100.60") == 401
    c = world.client("bob")
    r = c.post("/api/v1/password", json={"password": PASSWORD, "new_password": "new long pw 1"},
               headers={"X-CSRFToken": csrf_of(c)})
    assert r.status_code == 204
    assert lock_probe and all(lock_probe), lock_probe


def test_change_password_counts_in_the_rate_limit(world: World) -> None:
    _set(world, login_max_failures=3)
    c = world.client("alice")
    h = {"X-CSRFToken": csrf_of(c)}
    env = {"REMOTE_ADDR": "198.51.100.70"}
    for _ in range(3):
        r = c.post("/api/v1/password", json={"password": "guess-guess",
                                             "new_password": "new long pw 1"},
                   headers=h, environ_base=env)
        assert r.status_code == 403
    r = c.post("/api/v1/password", json={"password": PASSWORD, "new_password": "new long pw 1"},
               headers=h, environ_base=env)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def _two_sessions(w: World, name: str) -> tuple[FlaskClient, FlaskClient]:
    a, b = w.client(name), w.client(name)
    assert a.get(API).status_code == b.get(API).status_code == 200
    return a, b


def test_logout_ends_every_session_of_the_user(world: World) -> None:
    a, b = _two_sessions(world, "alice")
    other = world.client("bob")
    assert a.post("/logout", data={"csrf_token": csrf_of(a)}).status_code == 302
    assert b.get(API).status_code == 401
    assert b.get("/").status_code == 302
    assert other.get(API).status_code == 200  # another user's session is untouched
    c = world.client("alice")  # logging in again works
    assert c.delete(API, headers={"X-CSRFToken": csrf_of(c)}).status_code == 204
    assert world.client("alice").get(API).status_code == 200


def test_password_change_keeps_this_session_and_ends_the_others(world: World) -> None:
    a, b = _two_sessions(world, "alice")
    token = a.post("/api/v1/tokens", json={"label": "ci"},
                   headers={"X-CSRFToken": csrf_of(a)}).json["token"]
    r = a.post("/api/v1/password", json={"password": PASSWORD, "new_password": "new long pw 1"},
               headers={"X-CSRFToken": csrf_of(a)})
    assert r.status_code == 204
    assert a.get(API).status_code == 200
    assert b.get(API).status_code == 401
    # API tokens stay valid until revoked.
    assert world.app.test_client().get(
        API, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_admin_reset_and_disable_end_the_users_sessions(world: World) -> None:
    admin = world.client("admin")
    h = {"X-CSRFToken": csrf_of(admin)}
    a, b = _two_sessions(world, "alice")
    r = admin.patch(f"/api/v1/users/{world.alice}", json={"password": "reset long pw"},
                    headers=h)
    assert r.status_code == 200 and "session_version" not in r.json
    assert a.get(API).status_code == b.get(API).status_code == 401
    # The admin resetting their own password stays logged in (other sessions end).
    other_admin = world.client("admin")
    assert admin.patch(f"/api/v1/users/{world.admin}", json={"password": "admin long pw"},
                       headers=h).status_code == 200
    assert admin.get(API).status_code == 200 and other_admin.get(API).status_code == 401
    # Disabling: sessions and tokens end, and rvd_back is asked to close their access.
    c = world.app.test_client()
    assert login(c, "bob").status_code == 302
    token = c.post("/api/v1/tokens", json={}, headers={"X-CSRFToken": csrf_of(c)}).json["token"]
    r = admin.patch(f"/api/v1/users/{world.bob}", json={"is_disabled": True}, headers=h)
    assert r.status_code == 200
    assert c.get(API).status_code == 401
    assert world.app.test_client().get(
        API, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    closes = world.requests("close_user")
    assert [(q.args, q.user_id) for q in closes] == [({"user_id": world.bob}, world.admin)]
    # Disabling again queues nothing more.
    admin.patch(f"/api/v1/users/{world.bob}", json={"is_disabled": True}, headers=h)
    assert len(world.requests("close_user")) == 1
    with world.db.sessionmaker() as s:
        assert s.get(User, world.bob).session_version >= 1
        assert s.scalar(select(Request.status).where(Request.command == "close_user")) in (
            "requested", "working", "done")


def test_sessions_have_an_absolute_lifetime(world: World) -> None:
    c = world.client("alice")
    assert c.get(API).status_code == 200
    hours = getattr(world.config.front, "session_max_hours", 12)
    with c.session_transaction() as sess:
        sess["since"] = int(time.time()) - hours * 3600 - 5
        sess["seen"] = int(time.time())  # active a second ago: idle timeout not reached
    assert c.get(API).status_code == 401
    resp = c.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_a_disabled_users_bearer_token_stops_working(world: World) -> None:
    """However the user was disabled (here: straight in the database, as the CLI may),
    a token that still exists no longer authenticates."""
    c = world.client("alice")
    token = c.post("/api/v1/tokens", json={}, headers={"X-CSRFToken": csrf_of(c)}).json["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert world.app.test_client().get("/api/v1/machines", headers=bearer).status_code == 200
    with world.db.session() as s:
        s.get(User, world.alice).is_disabled = True
    assert world.app.test_client().get("/api/v1/machines", headers=bearer).status_code == 401
    assert c.get(API).status_code == 401
