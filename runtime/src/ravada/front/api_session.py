"""/api/v1 documents, sessions, passwords and API tokens (routes on the ``api`` blueprint)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf

from ravada.front import accounts, totp, web
from ravada.front.api import body, bp
from ravada.front.errors import Forbidden, Unauthorized
from ravada.front.openapi import document
from ravada.front.state import front


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(document())


@bp.post("/session")
def session_login() -> Any:
    data = body()
    v = totp.api_login(front(), data, web.client_ip())  # {name, password[, code]}
    web.sign_in(v)
    return jsonify({"user": {"id": v.id, "name": v.name, "is_admin": v.is_admin},
                    "csrf_token": generate_csrf()})


@bp.get("/session")
def session_info() -> Any:
    v = web.current()
    info: dict[str, Any] = {"user": {"id": v.id, "name": v.name, "is_admin": v.is_admin},
                            "auth": g.auth}
    if g.auth == "session":
        info["csrf_token"] = generate_csrf()
    return jsonify(info)


@bp.delete("/session")
def session_logout() -> Any:
    web.sign_out()
    return "", 204


@bp.post("/password")
def password_change() -> Any:
    data = body()
    version = accounts.change_own_password(front(), web.current(), data.get("password"),
                                           data.get("new_password"), web.client_ip())
    web.keep_session(version)
    return "", 204


@bp.get("/tokens")
def tokens_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(accounts.list_tokens(s, web.current()))


@bp.post("/tokens")
def tokens_create() -> Any:
    """With a session (or token): a token for that user. Without: {name, password} required."""
    data = body()
    if "password" in data:
        v = totp.api_login(front(), data, web.client_ip())
        if totp.must_enrol(front(), v):  # a token is made after a full login only
            raise Forbidden(_("set up two-factor login first (log in with POST /api/v1/session)"),
                            extra={"reason": "totp_enrolment_required"})
    elif web.viewer() is not None:
        v = web.current()
        if g.auth == "session":
            from ravada.front import csrf

            csrf.protect()
    else:
        raise Unauthorized(_("log in, or send {\"name\", \"password\"} to get a token"))
    token = accounts.create_token(front(), v, data.get("label"))
    return jsonify(token), 201


@bp.delete("/tokens/<id:token_id>")
def tokens_delete(token_id: int) -> Any:
    accounts.delete_token(front(), web.current(), token_id)
    return "", 204
