"""Login and logout pages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from ravada.front import accounts, oidc, totp, web
from ravada.front.errors import FrontError
from ravada.front.state import front

bp = Blueprint("auth", __name__)


@bp.get("/login")
def login() -> Any:
    if web.viewer() is not None and g.auth == "session":
        return redirect(web.safe_next(request.args.get("next")))
    notice = "Your session expired; please log in again." if g.get("session_expired") else None
    return render_template("login.html", next=request.args.get("next", ""), notice=notice)


@bp.post("/login")
def login_post() -> Any:
    name = request.form.get("name", "")
    try:
        v = accounts.login(front(), name, request.form.get("password", ""), web.client_ip())
    except FrontError as exc:
        if exc.status not in (400, 401, 429, 503):
            raise
        resp = render_template("login.html", error=exc.detail, name=name,
                               next=request.form.get("next", ""))
        return resp, exc.status, exc.headers
    return totp.after_first_factor(v, request.form.get("next"))


@bp.post("/logout")
def logout() -> Any:
    """End every session of the user here; a single sign-on session continues at the
    provider's end-session endpoint, which sends the browser back to the login page."""
    provider_logout = oidc.end_session_url()
    web.sign_out()
    return redirect(provider_logout or url_for("auth.login"))
