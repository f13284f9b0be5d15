"""The first administrator through the API, with the second factor when the host asks for one.

With ``rvd_totp_required_for`` admins or all (one platform of molecule.yml), the admin
enrols once per host as a person would: a session that reaches nothing but enrolment,
``POST /totp`` for the secret, a code computed from it by pyotp (what an authenticator app
does) to confirm. The secret is kept in the scenario's ephemeral directory so later test
modules and verify runs log in with codes computed from it. A code is good once: each
login waits for a step no login of this file used yet. The bearer token is cached per host
for the test process, so most modules need no new code.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pyotp

from e2e.api import Api, ApiError

STEP = 30
_TOKENS: dict[str, str] = {}


def _state_file(name: str) -> Path:
    root = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or tempfile.gettempdir())
    return root / f"totp-admin-{name}.json"


def needs_code(target: Any) -> bool:
    return target.var("rvd_totp_required_for", "none") in ("admins", "all")


def fresh_code(target: Any) -> str:
    """A code of the enrolled secret for a step not used before (waits up to one step)."""
    path = _state_file(target.name)
    state = json.loads(path.read_text())
    while int(time.time()) // STEP <= state["last_step"]:
        time.sleep(STEP - time.time() % STEP + 0.2)
    step = int(time.time()) // STEP
    state["last_step"] = step
    path.write_text(json.dumps(state))
    return pyotp.TOTP(state["secret"]).at(step * STEP)


def enrol(target: Any, user: str, password: str) -> None:
    """Enrol the admin's second factor through the API unless this scenario did already.

    An admin enrolled by an earlier scenario run whose secret is gone is reset with
    ``rvd_back --reset-totp`` first (what an operator does)."""
    path = _state_file(target.name)
    if path.exists():
        return
    try:
        session = Api(target.ip).login(user, password)
    except ApiError as exc:
        if exc.status != 401 or not isinstance(exc.body, dict) \
                or exc.body.get("reason") != "totp_required":
            raise
        target.run(f"rvd_back --reset-totp {user}")
        session = Api(target.ip).login(user, password)
    refused = session.call("GET", "/api/v1/users", ok=(403,)).json()
    assert refused["reason"] == "totp_enrolment_required", refused
    secret = session.post("/totp")["secret"]
    step = int(time.time()) // STEP
    session.post("/totp/confirm", {"code": pyotp.TOTP(secret).at(step * STEP)})
    path.write_text(json.dumps({"secret": secret, "last_step": step}))


def admin_api(target: Any) -> Api:
    """The first administrator with a bearer token (two factors when the host asks)."""
    user, password = target.var("rvd_admin_user"), target.var("rvd_admin_password")
    assert user and password, "inventory lacks rvd_admin_user / rvd_admin_password"
    client = Api(target.ip)
    if not needs_code(target):
        return client.login_token(user, password)
    if target.name not in _TOKENS:
        for attempt in (1, 2):
            enrol(target, user, password)
            try:
                client.login_token(user, password, code=fresh_code(target))
                break
            except ApiError as exc:  # a secret kept from another container of this name
                reason = (exc.body or {}).get("reason") if isinstance(exc.body, dict) else None
                if attempt == 2 or reason not in ("totp_enrolment_required", "totp_invalid"):
                    raise
                _state_file(target.name).unlink()
                if reason == "totp_invalid":
                    target.run(f"rvd_back --reset-totp {user}")
        _TOKENS[target.name] = client.session.headers["Authorization"]
    client.session.headers["Authorization"] = _TOKENS[target.name]
    return client
