"""The JSON API under /api/v1: everything the pages do, for scripts and automation.

This module holds the one ``api`` blueprint, its authentication and the helpers the
route modules share; the routes live by resource in api_session, api_machines,
api_hardware, api_requests and api_users (imported by the app factory, which registers
them before the blueprint is registered).

Authentication: ``Authorization: Bearer <token>`` (tokens from POST /tokens), or
the session cookie plus an ``X-CSRFToken`` header on state-changing requests.
Errors are ``{"error": code, "detail": text}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from flask_babel import gettext as _

from ravada import queue
from ravada.db import Request
from ravada.front import machines, validate, web
from ravada.front.errors import BadInput, Forbidden, Unauthorized
from ravada.front.state import front

bp = Blueprint("api", __name__, url_prefix=web.API_PREFIX)
PUBLIC = {"api.openapi", "api.session_login", "api.tokens_create"}
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


@bp.before_request
def _authenticate() -> None:
    if g.auth == "bad_token":
        raise Unauthorized(_("invalid or revoked API token"))
    if request.endpoint in PUBLIC:
        return
    if web.viewer() is None:
        raise Unauthorized(_("log in or send an API token (Authorization: Bearer …)"))
    if g.auth == "session" and request.method in MUTATING:
        from ravada.front import csrf

        csrf.protect()


def body() -> dict[str, Any]:
    """The JSON object sent with the request ({} when there is none)."""
    if not request.data:
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadInput(_("the request body must be a JSON object"))
    return data


def require_admin() -> None:
    if not web.current().is_admin:
        raise Forbidden(_("administrators only"))


def wait_arg(default: float = 0.0) -> float:
    return validate.wait_seconds(request.args.get("wait"), default=default)


def request_reply(req: int | Request, wait: float, **extra: Any) -> tuple[Response, int]:
    """A submitted request: 202 while pending, 200 when done, 409 when it failed.

    ``req``: its id, or the row the caller already read (no second read)."""
    r = req if isinstance(req, Request) else machines.get_request(front(), web.current(), req,
                                                                  wait)
    view = machines.request_json(r, web.current())
    out = {"request_id": r.id, "status": r.status, **extra, "request": view}
    if r.status == queue.FAILED:
        out = {"error": "request_failed", "detail": r.error or "failed", **out}
        return jsonify(out), 409
    return jsonify(out), 200 if r.status == queue.DONE else 202
