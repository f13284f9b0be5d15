"""Admin pages of the ISO library: the list (forms, no script needed) and the JSON
endpoints the upload script talks to (session + X-CSRFToken, errors as JSON)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ravada import waiters
from ravada.front import isolib, live, web
from ravada.front.errors import BadInput, FrontError
from ravada.front.state import front

bp = Blueprint("isos", __name__, url_prefix="/admin/isos")
data_bp = Blueprint("isos_data", __name__, url_prefix="/admin/isos/data")


@bp.get("/")
@web.admin_required
def page() -> Any:
    fs = front()
    return render_template("admin/isos.html", isos=isolib.library(fs),
                           chunk_bytes=fs.config.front.max_request_bytes,
                           max_bytes=fs.config.front.iso_max_bytes)


@bp.post("/url")
@web.admin_required
def register_url() -> Any:
    return web.form_post(
        lambda: isolib.register_url(front(), web.current(), request.form.to_dict()),
        lambda row: _("Downloading %(name)s (request %(id)s).", name=row["name"],
                      id=row["request_id"]), "isos.page")


@bp.post("/<id:iso_id>/delete")
@web.admin_required
def delete(iso_id: int) -> Any:
    return web.form_post(lambda: isolib.delete(front(), web.current(), iso_id),
                         lambda rid: _("Removal requested (request %(id)s).", id=rid),
                         "isos.page")


@bp.post("/scan")
@web.admin_required
def scan() -> Any:
    rid = isolib.scan(front(), web.current())
    flash(_("Checking the ISO directory (request %(id)s).", id=rid), "ok")
    return redirect(url_for("isos.page"))


# ---------------------------------------------------------------- JSON for the script

@data_bp.errorhandler(FrontError)
def _json_error(exc: FrontError) -> Any:
    return jsonify(exc.as_json()), exc.status


@data_bp.errorhandler(413)
def _too_large(_exc: Exception) -> Any:
    """Werkzeug refuses a body over MAX_CONTENT_LENGTH before the view runs (the CSRF check
    reads the request first): say what the limit is."""
    limit = front().config.front.max_request_bytes
    return jsonify({"error": "too_large",
                    "detail": f"a chunk is at most {limit} bytes (front.max_request_bytes)"}), 413


def _body() -> dict[str, Any]:
    got = request.get_json(silent=True)
    if not isinstance(got, dict):
        raise BadInput("the request body must be a JSON object")
    return got


@data_bp.get("/")
@web.admin_required
def list_json() -> Any:
    return web.no_store(jsonify(isolib.library(front())))


@data_bp.get("/live")
@web.admin_required
def live_json() -> Any:
    """The rows as a long-poll (``?after=<fp>&wait=<s>``): answers when rvd_back announces
    a change of the library (a transfer's progress, once a second) or after ``wait``."""
    fs = front()
    return live.reply(lambda: json.dumps(isolib.library(fs), sort_keys=True), waiters.ISOS,
                      lambda text: {"isos": json.loads(text)})


@data_bp.get("/<id:iso_id>")
@web.admin_required
def one_json(iso_id: int) -> Any:
    return web.no_store(jsonify(isolib.get(front(), iso_id)))


@data_bp.post("/uploads")
@web.admin_required
def upload_start() -> Any:
    return jsonify(isolib.start_upload(front(), web.current(), _body())), 201


@data_bp.put("/uploads/<id:iso_id>")
@web.admin_required
def upload_chunk(iso_id: int) -> Any:
    return jsonify(isolib.put_chunk(front(), web.current(), iso_id,
                                    request.args.get("offset"), request.content_length,
                                    request.stream))
