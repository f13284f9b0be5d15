"""End-user pages: the desktop list, the display page, the browser console, the account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, abort, make_response, render_template, send_from_directory

from ravada.front import accounts, consoles, machines, policies, web
from ravada.front.errors import Conflict, Unavailable
from ravada.front.state import front

bp = Blueprint("user", __name__)


@bp.get("/")
@web.login_required
def index() -> Any:
    v = web.current()
    with front().db.sessionmaker() as s:
        bases = machines.list_bases(s, v)
        mine = machines.list_machines(s, v, mine=True)
    return render_template("index.html", bases=bases, machines=mine)


@bp.get("/machine/<id:machine_id>")
@web.login_required
def display(machine_id: int) -> Any:
    """The display page: every view opens the display for this viewer's address."""
    fs, v = front(), web.current()
    with fs.db.sessionmaker() as s:
        row = machines.visible_machine(s, v, machine_id)
        m = machines.machine_json(row)
        notices = policies.desktop(row.base, row)["notices"] if row.base else []
    info, problem = None, None
    try:
        info, _ = machines.open_display(fs, v, machine_id, web.client_ip(),
                                        browser_host=web.browser_host())
    except (Conflict, Unavailable) as exc:
        problem = exc.detail
    tls = bool(fs.config.display.spice_tls and info and (info.get("spice") or {}).get("tls_port"))
    return web.no_store(make_response(render_template(
        "display.html", machine=m, info=info, problem=problem, tls=tls, notices=notices)))


@bp.get("/machine/<id:machine_id>/console")
@web.login_required
def console_page(machine_id: int) -> Any:
    fs, v = front(), web.current()
    try:
        ticket = consoles.ticket(fs, v, machine_id, web.client_ip(),
                                 web.site()["console_ws_url"])
    except (Conflict, Unavailable) as exc:
        return render_template("error.html", status=exc.status, detail=exc.detail), exc.status
    return web.no_store(make_response(render_template("console.html", ticket=ticket)))


@bp.get("/account")
@web.login_required
def account() -> Any:
    with front().db.sessionmaker() as s:
        tokens = accounts.list_tokens(s, web.current())
    return render_template("account.html", tokens=tokens)


@bp.get("/novnc/<path:filename>")
def novnc(filename: str) -> Any:
    """noVNC's files (ES modules), served locally from ``front.novnc_dir``."""
    root = Path(front().config.front.novnc_dir)
    if not root.is_dir():
        abort(404, "noVNC is not installed (front.novnc_dir)")
    resp = send_from_directory(root, filename, max_age=3600)
    if filename.endswith(".js"):
        resp.mimetype = "text/javascript"
    return resp
