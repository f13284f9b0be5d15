"""The second factor's JSON API (on the ``api`` blueprint) and the admin reset (on the
``admin`` blueprint); importing this module registers the views."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_babel import gettext as _

from ravada.front import totp, web
from ravada.front.admin import bp as admin_bp
from ravada.front.api import bp as api_bp
from ravada.front.errors import BadInput
from ravada.front.state import front


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True) if request.data else {}
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    return data


@api_bp.get("/totp")
def totp_status() -> Any:
    return jsonify(totp.status(front(), web.current()))


@api_bp.post("/totp")
def totp_begin() -> Any:
    """Start enrolment: the secret, its otpauth:// URI and the QR code (SVG data: URI)."""
    return jsonify(totp.begin(front(), web.current())), 201


@api_bp.post("/totp/confirm")
def totp_confirm() -> Any:
    codes = totp.confirm(front(), web.current(), _body().get("code"))
    return jsonify({"enabled": True, "recovery_codes": codes})


@api_bp.delete("/users/<id:user_id>/totp")
def users_totp_reset(user_id: int) -> Any:
    return jsonify(totp.reset(front(), web.current(), user_id))


@admin_bp.post("/users/<id:user_id>/totp")
@web.admin_required
def user_totp_reset(user_id: int) -> Any:
    return web.form_post(
        lambda: totp.reset(front(), web.current(), user_id),
        lambda u: _("Two-factor login of %(name)s reset (logged in the requests).",
                    name=u["name"]), "admin.users_page")
