"""End-user pages: the desktop list, the display page, the browser console, the account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from ravada.front import accounts, consoles, displays, machines, policies, web
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


def _display_page(machine_id: int, info: dict[str, Any] | None, problem: str | None) -> Any:
    fs, v = front(), web.current()
    with fs.db.sessionmaker() as s:
        row = machines.visible_machine(s, v, machine_id)
        m = machines.machine_json(row)
        notices = policies.desktop(row.base, row)["notices"] if row.base else []
    tls = bool(fs.config.display.spice_tls)
    return web.no_store(make_response(render_template(
        "display.html", machine=m, info=info, problem=problem, tls=tls,
        direct_vnc=fs.config.display.direct_vnc, notices=notices)))


@bp.get("/machine/<id:machine_id>")
@web.login_required
def display(machine_id: int) -> Any:
    """The display page. A GET never opens anything: it shows the connection details a
    POST of this viewer already got (``?request=``, the click on a desktop), else the
    buttons that open the display (each a POST with the CSRF token)."""
    info = None
    rid = request.args.get("request", "")
    if rid.isdigit() and len(rid) <= 10:
        info = displays.display_of_request(front(), web.current(), machine_id, int(rid),
                                           web.browser_host())
    return _display_page(machine_id, info, None)


@bp.post("/machine/<id:machine_id>")
@web.login_required
def display_open(machine_id: int) -> Any:
    """"Connect": open the display for this viewer's address (a fresh password)."""
    info, problem = None, None
    try:
        info, _ = displays.open_display(front(), web.current(), machine_id, web.client_ip(),
                                        browser_host=web.browser_host())
    except (Conflict, Unavailable) as exc:
        problem = exc.detail
    return _display_page(machine_id, info, problem)


@bp.get("/machine/<id:machine_id>/console")
@web.login_required
def console_get(machine_id: int) -> Any:
    """A bookmarked console: back to the display page (opening it is a POST)."""
    with front().db.sessionmaker() as s:
        machines.visible_machine(s, web.current(), machine_id)  # 404 for other people's
    return redirect(url_for("user.display", machine_id=machine_id))


@bp.post("/machine/<id:machine_id>/console")
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
