# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""The TOTP second factor (issue 13 part 2): enrolment, the login's code step, reuse,
rate limit, recovery codes, ``auth.totp.required_for`` and the audited admin reset.

Codes are computed by pyotp from the secret the enrolment page shows, as an
authenticator app would; steps are picked inside the server's window of one step
(t-1 for the enrolment, t and t+1 for logins) so no test waits 30 s.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from test_front_support import PASSWORD, World, csrf_of, login, world  # noqa: F401

from ravada import config as rconfig
from ravada.db import LoginAttempt, RecoveryCode, Request, Setting, User


def _steady() -> float:
    """Now, at least 3 s away from the end of a 30 s step (codes stay in the window)."""
    if time.time() % 30 > 27:
        time.sleep(30 - time.time() % 30 + 0.1)
    return time.time()


def _code(secret: str, offset: int = 0) -> str:
    """The code of the step ``offset`` steps from now."""
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * offset)


def _enrol(w: World, c: FlaskClient) -> tuple[str, list[str]]:
    """Enrol through the account pages; the secret and the recovery codes shown."""
    page = c.post("/account/2fa", data={"csrf_token": csrf_of(c)})
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    html = page.get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', html).group(1)
    _steady()
    done = c.post("/account/2fa/confirm", data={"code": _code(secret, -1),
                                                "csrf_token": csrf_of(c)})
    assert done.status_code == 200, done.get_data(as_text=True)[:300]
    codes = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", done.get_data(as_text=True))
    return secret, codes


def _code_step(w: World, c: FlaskClient, code: str, ip: str = "127.0.0.1") -> Any:
    return c.post("/login/code", data={"code": code, "csrf_token": csrf_of(c)},
                  environ_base={"REMOTE_ADDR": ip})


def _password_step(w: World, name: str, ip: str = "127.0.0.1") -> FlaskClient:
    c = w.app.test_client()
    c.get("/login")
    r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(c),
                               "next": "/account"}, environ_base={"REMOTE_ADDR": ip})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login/code"), \
        r.headers.get("Location")
    return c


def test_enrol_from_the_account_page(world: World) -> None:
    c = world.client("alice")
    assert "Set up" in c.get("/account").get_data(as_text=True)
    start = c.post("/account/2fa", data={"csrf_token": csrf_of(c)}).get_data(as_text=True)
    assert 'src="data:image/svg+xml' in start  # the QR code, made by the server
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', start).group(1)
    wrong = c.post("/account/2fa/confirm", data={"code": "000000", "csrf_token": csrf_of(c)})
    assert wrong.status_code == 400 and "wrong code" in wrong.get_data(as_text=True)
    _steady()
    done = c.post("/account/2fa/confirm", data={"code": _code(secret),
                                                "csrf_token": csrf_of(c)})
    codes = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert done.headers["Cache-Control"] == "no-store"
    assert "Recovery codes left: 10" in c.get("/account/2fa").get_data(as_text=True)
    assert "recovery-codes" not in c.get("/account/2fa").get_data(as_text=True)  # shown once
    with world.db.sessionmaker() as s:
        user = s.get(User, world.alice)
        assert user.totp_enabled_at is not None and secret not in user.totp_secret
        hashes = list(s.scalars(select(RecoveryCode.code_hash)
                                .where(RecoveryCode.user_id == world.alice)))
    assert len(hashes) == 10 and not any(c.replace("-", "") in h for c in codes for h in hashes)
    key = os.path.join(os.path.dirname(world.config.front.secret_key_file), "totp.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    # the API says the same, and a second enrolment is refused while one is on
    assert c.get("/api/v1/totp").json == {"enabled": True, "required": False,
                                          "recovery_codes_left": 10}
    again = c.post("/api/v1/totp", headers={"X-CSRFToken": csrf_of(c)})
    assert again.status_code == 409


def test_login_asks_for_the_code_after_the_password(world: World) -> None:
    secret, _ = _enrol(world, world.client("alice"))
    c = _password_step(world, "alice")
    assert c.get("/account").status_code == 302  # the password alone signs nobody in
    assert c.get("/api/v1/session").status_code == 401
    r = _code_step(world, c, _code(secret))
    assert r.status_code == 302 and r.headers["Location"].endswith("/account")
    assert c.get("/api/v1/session").json["user"]["name"] == "alice"
    # the API: {name, password} alone is refused with a reason, with the code it works
    api = world.app.test_client()
    r = api.post("/api/v1/session", json={"name": "alice", "password": PASSWORD})
    assert r.status_code == 401 and r.json["reason"] == "totp_required"
    r = api.post("/api/v1/session", json={"name": "alice", "password": PASSWORD,
                                          "code": _code(secret, 1)})
    assert r.status_code == 200, r.json


def test_a_used_code_is_refused(world: World) -> None:
    secret, _ = _enrol(world, world.client("alice"))
    code = _code(secret)
    assert _code_step(world, _password_step(world, "alice"), code).status_code == 302
    replay = _code_step(world, _password_step(world, "alice"), code)
    assert replay.status_code == 401 and "already used" in replay.get_data(as_text=True)
    # an older step is refused too once a later one was used
    api = world.app.test_client()
    assert api.post("/api/v1/tokens", json={"name": "alice", "password": PASSWORD,
                                            "code": _code(secret, 1)}).status_code == 201
    r = api.post("/api/v1/session", json={"name": "alice", "password": PASSWORD,
                                          "code": code})
    assert r.status_code == 401 and r.json["reason"] == "totp_invalid"


def test_wrong_codes_count_in_the_login_rate_limit(world: World) -> None:
    with world.db.session() as s:
        s.merge(Setting(key="login_max_failures", value=3))
    secret, _ = _enrol(world, world.client("alice"))
    ip = "198.51.100.7"
    c = _password_step(world, "alice", ip)
    for wrong in ("123456", "654321", "000000"):
        assert _code_step(world, c, wrong, ip).status_code == 401
    with world.db.sessionmaker() as s:
        failed = s.scalars(select(LoginAttempt).where(LoginAttempt.ok.is_(False))).all()
    assert [(a.username, a.client_ip) for a in failed] == [("alice", ip)] * 3
    right = _code_step(world, c, _code(secret), ip)  # the address is now blocked
    assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0
    # from elsewhere the real alice still gets in
    assert _code_step(world, _password_step(world, "alice", "198.51.100.8"), _code(secret),
                      "198.51.100.8").status_code == 302


def test_a_recovery_code_logs_in_once(world: World) -> None:
    _, codes = _enrol(world, world.client("alice"))
    c = _password_step(world, "alice")
    assert _code_step(world, c, codes[3].lower()).status_code == 302  # case and dashes free
    again = _code_step(world, _password_step(world, "alice"), codes[3])
    assert again.status_code == 401
    with world.db.sessionmaker() as s:
        used = s.scalars(select(RecoveryCode).where(RecoveryCode.used_at.is_not(None))).all()
    assert len(used) == 1
    assert "Recovery codes left: 9" in c.get("/account/2fa").get_data(as_text=True)


def test_required_for_admins_sends_them_to_enrolment(world: World) -> None:
    early = world.client("admin")  # a bearer token made before the rule: not affected
    token = early.post("/api/v1/tokens", json={"label": "ci"},
                       headers={"X-CSRFToken": csrf_of(early)}).json["token"]
    world.config.auth.totp.required_for = "admins"
    c = world.client("admin")
    for page in ("/admin/users", "/admin/requests", "/", "/account"):
        r = c.get(page)
        assert r.status_code == 302 and r.headers["Location"].endswith("/account/2fa"), page
    r = c.get("/api/v1/users")
    assert r.status_code == 403 and r.json["reason"] == "totp_enrolment_required"
    r = c.post("/api/v1/machines", json={"name": "x"}, headers={"X-CSRFToken": csrf_of(c)})
    assert r.status_code == 403
    r = world.app.test_client().post("/api/v1/tokens", json={"name": "admin",
                                                             "password": PASSWORD})
    assert r.status_code == 403 and r.json["reason"] == "totp_enrolment_required"
    bearer = world.app.test_client().get("/api/v1/users",
                                         headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200
    assert world.client("alice").get("/").status_code == 200  # not an admin: no rule
    # enrolment through the API (what automation does), then everything opens
    begin = c.post("/api/v1/totp", headers={"X-CSRFToken": csrf_of(c)})
    assert begin.status_code == 201 and begin.json["otpauth_uri"].startswith("otpauth://totp/")
    assert begin.json["qr_svg"].startswith("data:image/svg+xml")
    _steady()
    ok = c.post("/api/v1/totp/confirm", json={"code": _code(begin.json["secret"])},
                headers={"X-CSRFToken": csrf_of(c)})
    assert ok.status_code == 200 and len(ok.json["recovery_codes"]) == 10
    assert c.get("/admin/users").status_code == 200
    world.config.auth.totp.required_for = "all"
    assert world.client("bob").get("/").status_code == 302


def test_admin_reset_is_audited(world: World) -> None:
    _enrol(world, world.client("alice"))
    bob = world.client("bob")
    assert bob.delete(f"/api/v1/users/{world.alice}/totp",
                      headers={"X-CSRFToken": csrf_of(bob)}).status_code == 403
    admin = world.client("admin")
    users = admin.get("/admin/users").get_data(as_text=True)
    assert "Reset 2FA" in users
    r = admin.post(f"/admin/users/{world.alice}/totp", data={"csrf_token": csrf_of(admin)})
    assert r.status_code == 302
    assert login(world.app.test_client(), "alice").headers["Location"] == "/"  # password only
    with world.db.sessionmaker() as s:
        rows = s.scalars(select(Request).where(Request.command == "totp_reset")).all()
        assert s.scalar(select(RecoveryCode.id)) is None
    assert [(r.user_id, r.status, r.result["user"]) for r in rows] == \
        [(world.admin, "done", "alice")]
    assert "totp_reset of alice" in admin.get("/admin/requests").get_data(as_text=True)
    api = admin.delete(f"/api/v1/users/{world.alice}/totp",
                       headers={"X-CSRFToken": csrf_of(admin)})
    assert api.status_code == 200 and api.json["totp_enabled"] is False
    assert len(world.requests("totp_reset")) == 2
    # the locked-out admin's way back: rvd_back on the server, logged the same way
    _enrol(world, world.client("admin"))
    from test_cli_back import rvd, write_config

    tmp = Path(world.config.front.secret_key_file).parent
    out = rvd(write_config(tmp, world.db.url), "--reset-totp", "admin")
    assert out.returncode == 0 and "second factor of admin removed" in out.stdout, out.stderr
    assert login(world.app.test_client(), "admin").headers["Location"] == "/"
    last = world.requests("totp_reset")[-1]
    assert (last.user_id, last.result["by"]) == (None, "rvd_back --reset-totp")


def test_required_for_is_checked_in_the_config(tmp_path: Any) -> None:
    queue = {"socket": str(tmp_path / "queue.sock")}
    with pytest.raises(rconfig.ConfigError, match=r"^auth\.totp\.required_for: one of"):
        rconfig.from_dict({"queue": queue, "auth": {"totp": {"required_for": "admin"}}})
    with pytest.raises(rconfig.ConfigError, match=r"^auth\.totp\.key_file: an absolute"):
        rconfig.from_dict({"queue": queue, "auth": {"totp": {"key_file": "totp.key"}}})
    assert rconfig.from_dict({"queue": queue, "auth": {"totp": {"required_for": "admins"}}}
                             ).auth.totp.required_for == "admins"
