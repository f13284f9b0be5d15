"""The second factor in the front: the login's code step, enrolment, the admin reset.

The password (or any first factor) leaves a *pending* login in the session cookie, not
a signed-in one: ``uid`` is only set once the code is right. Wrong codes are failed
logins for ``ravada.front.throttle`` (same address and account limits as passwords).
With ``auth.totp.required_for``, a signed-in user who must have a factor and has none
reaches nothing but enrolment (pages redirect, the API answers 403); bearer tokens are
not touched (they are only made after a full login).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, g, make_response, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import false, select

from ravada.auth.totp import TotpError, reset_audited
from ravada.db import User, utcnow
from ravada.front import accounts, throttle, web
from ravada.front.dbutil import write_session
from ravada.front.errors import (
    BadInput,
    Conflict,
    Forbidden,
    FrontError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from ravada.front.i18n import N_, say
from ravada.front.state import FrontState, Viewer, front

bp = Blueprint("totp", __name__)
log = logging.getLogger("ravada.front")
PENDING_SECONDS = 300  # the code must follow the password within this time
BAD_CODE = N_("Invalid or already used code.")
NEED_CODE = N_("Enter the code of your authenticator app (or a recovery code).")
KEY_TROUBLE = N_("The second-factor secrets cannot be read (was auth.totp.key_file "
                 "replaced?); an administrator can reset your second factor.")
# Reachable by a signed-in user who must enrol first.
ENROL_ENDPOINTS = {"static", "auth.login", "auth.login_post", "auth.logout", "api.openapi",
                   "api.session_login", "api.session_info", "api.session_logout",
                   "api.totp_status", "api.totp_begin", "api.totp_confirm"}


# ---------------------------------------------------------------- services

def verify_login(fs: FrontState, user_id: int, code: Any, client_ip: str) -> Viewer:
    """The second step: the user's TOTP (or recovery) code; throttled and recorded like
    a password. Returns the viewer to sign in."""
    with fs.db.sessionmaker() as s:
        name = s.scalar(select(User.name).where(User.id == user_id,
                                                User.is_disabled == false()))
    if name is None:
        raise Unauthorized(_(BAD_CODE))
    accounts.throttled(fs, client_ip, name)
    if not isinstance(code, str) or not code.strip():
        raise BadInput(_(NEED_CODE))
    with write_session(fs.db) as s:
        try:
            kind = fs.totp.check(s, user_id, code)
        except ValueError:
            log.error("TOTP secret of user %s cannot be decrypted with auth.totp.key_file",
                      user_id)
            raise Unavailable(_(KEY_TROUBLE)) from None
        throttle.record(s, client_ip, name, kind is not None)
        if kind is None:
            s.commit()
            raise Unauthorized(_(BAD_CODE), extra={"reason": "totp_invalid"})
        user = s.get(User, user_id)
        assert user is not None
        user.last_login_at = utcnow()
        if kind == "recovery":
            log.info("user %s logged in with a recovery code", name)
        return accounts.viewer_of(user)


def api_login(fs: FrontState, data: dict[str, Any], client_ip: str) -> Viewer:
    """``{name, password[, code]}`` of the API: both factors in one request."""
    v = accounts.login(fs, data.get("name"), data.get("password"), client_ip)
    if not v.second_factor:
        return v
    if data.get("code") is None:
        raise Unauthorized(_("this account has two-factor login: send the code as \"code\""),
                           extra={"reason": "totp_required"})
    return verify_login(fs, v.id, data.get("code"), client_ip)


def must_enrol(fs: FrontState, v: Viewer) -> bool:
    return not v.second_factor and fs.totp.required(v.is_admin)


def status(fs: FrontState, v: Viewer) -> dict[str, Any]:
    with fs.db.sessionmaker() as s:
        left = fs.totp.recovery_left(s, v.id) if v.second_factor else 0
    return {"enabled": v.second_factor, "required": fs.totp.required(v.is_admin),
            "recovery_codes_left": left}


def begin(fs: FrontState, v: Viewer) -> dict[str, Any]:
    """Start (or restart) enrolment: a new secret, its otpauth URI and QR code."""
    with write_session(fs.db) as s:
        try:
            secret = fs.totp.begin(s, v.id)
        except TotpError as exc:
            raise Conflict(say(exc)) from None
    return _enrolment(fs, v, secret)


def pending(fs: FrontState, v: Viewer) -> dict[str, Any] | None:
    with fs.db.sessionmaker() as s:
        try:
            secret = fs.totp.pending_secret(s, v.id)
        except ValueError:
            return None  # made with another key: start again
    return _enrolment(fs, v, secret) if secret else None


def _enrolment(fs: FrontState, v: Viewer, secret: str) -> dict[str, Any]:
    uri = fs.totp.uri(secret, v.name)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": fs.totp.qr_data_uri(uri)}


def confirm(fs: FrontState, v: Viewer, code: Any) -> list[str]:
    """Turn the factor on with a first good code; the recovery codes, shown once."""
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        raise BadInput(_("code: the 6 digits your authenticator app shows"))
    with write_session(fs.db) as s:
        try:
            codes = fs.totp.confirm(s, v.id, code)
        except TotpError as exc:
            raise Conflict(say(exc)) from None
        except ValueError:
            raise Conflict(_("the enrolment was made with another key; start again")) from None
        if codes is None:
            raise BadInput(_("wrong code: check the phone's clock and type the current code"),
                           extra={"reason": "totp_invalid"})
        return codes


def reset(fs: FrontState, admin: Viewer, user_id: int) -> dict[str, Any]:
    """Admin: remove a user's second factor; audited in the requests log."""
    if not admin.is_admin:
        raise Forbidden(_("administrators only"))
    with write_session(fs.db) as s:
        user = s.get(User, user_id) if 0 < user_id < 2**31 else None
        if user is None:
            raise NotFound(_("no user %(user_id)s", user_id=user_id))
        reset_audited(s, user, admin.id, admin.name)
        s.refresh(user)
        return accounts.user_json(user)


# ---------------------------------------------------------------- the login's second step

def after_first_factor(v: Viewer, next_url: str | None,
                       keep: dict[str, str] | None = None) -> Any:
    """The password (or the OpenID provider) said yes: sign in, or ask for the code.

    ``keep``: session values of the first factor (the provider's ID token for its
    logout) that must survive into the signed-in session."""
    if not v.second_factor:
        web.sign_in(v)
        session.update(keep or {})
        return redirect(web.safe_next(next_url))
    session.clear()
    session["totp_uid"] = v.id
    session["totp_at"] = int(time.time())
    session["totp_next"] = next_url or ""
    session["totp_keep"] = dict(keep or {})
    return redirect(url_for("totp.login_code"))


def _pending_uid() -> int | None:
    uid, at = session.get("totp_uid"), session.get("totp_at")
    if not isinstance(uid, int) or not isinstance(at, int):
        return None
    if time.time() - at > PENDING_SECONDS:
        session.clear()
        return None
    return uid


@bp.get("/login/code")
def login_code() -> Any:
    if _pending_uid() is None:
        return redirect(url_for("auth.login"))
    return render_template("login_code.html")


@bp.post("/login/code")
def login_code_post() -> Any:
    uid = _pending_uid()
    if uid is None:
        return redirect(url_for("auth.login"))
    try:
        v = verify_login(front(), uid, request.form.get("code", ""), web.client_ip())
    except FrontError as exc:
        if exc.status not in (400, 401, 429, 503):
            raise
        return render_template("login_code.html", error=exc.detail), exc.status, exc.headers
    next_url, keep = session.get("totp_next"), session.get("totp_keep")
    web.sign_in(v)
    if isinstance(keep, dict):
        session.update({k: val for k, val in keep.items() if isinstance(val, str)})
    return redirect(web.safe_next(next_url if isinstance(next_url, str) else None))


# ---------------------------------------------------------------- enrolment pages

@bp.get("/account/2fa")
@web.login_required
def enrol_page() -> Any:
    fs, v = front(), web.current()
    return render_template("totp.html", status=status(fs, v), enrolment=pending(fs, v))


@bp.post("/account/2fa")
@web.login_required
def enrol_start() -> Any:
    fs, v = front(), web.current()
    try:
        enrolment = begin(fs, v)
    except FrontError as exc:
        return render_template("totp.html", status=status(fs, v), error=exc.detail), exc.status
    return render_template("totp.html", status=status(fs, v), enrolment=enrolment)


@bp.post("/account/2fa/confirm")
@web.login_required
def enrol_confirm() -> Any:
    fs, v = front(), web.current()
    try:
        codes = confirm(fs, v, request.form.get("code", ""))
    except FrontError as exc:
        return render_template("totp.html", status=status(fs, v), enrolment=pending(fs, v),
                               error=exc.detail), exc.status
    with fs.db.sessionmaker() as s:
        g.viewer = accounts.load_viewer(s, v.id)  # the page shows the factor as on
    return web.no_store(make_response(render_template(
        "totp.html", status=status(fs, g.viewer), recovery_codes=codes)))


def enforce() -> Any:
    """before_request: a session user who must have a second factor and has none reaches
    only enrolment (``auth.totp.required_for``)."""
    v = web.viewer()
    if v is None or g.get("auth") != "session" or request.endpoint is None:
        return None
    if request.endpoint in ENROL_ENDPOINTS or request.endpoint.startswith("totp."):
        return None
    if not must_enrol(front(), v):
        return None
    if web.is_api():
        raise Forbidden(_("set up two-factor login first (POST /api/v1/totp, then "
                          "/api/v1/totp/confirm)"), extra={"reason": "totp_enrolment_required"})
    return redirect(url_for("totp.enrol_page"))
