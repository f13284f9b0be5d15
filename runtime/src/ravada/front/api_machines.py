"""/api/v1 bases and machines: listing, creating, starting, displays, actions."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, send_file
from flask_babel import gettext as _

from ravada import queue
from ravada.front import consoles, displays, machines, policies, validate, web
from ravada.front.api import body, bp, request_reply, require_admin, wait_arg
from ravada.front.errors import Conflict, Unavailable
from ravada.front.state import front


@bp.get("/bases")
def bases_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_bases(s, web.current()))


@bp.post("/bases/<id:base_id>/start")
def base_start(base_id: int) -> Any:
    """The user's click on a base. With ?wait=N, waits and adds the display info."""
    fs, v = front(), web.current()
    wait = wait_arg()
    started = machines.start_base(fs, v, base_id, web.client_ip())
    r = machines.get_request(fs, v, started["request_id"], wait)
    machine_id = started["machine_id"] or machines.machine_id_from(r)
    display = (displays.display_from_result(r.result, web.browser_host())
               if r.status == queue.DONE else None)
    if r.status == queue.DONE and display is None and machine_id is not None and wait > 0:
        try:
            display, _ = displays.open_display(fs, v, machine_id, web.client_ip(), wait,
                                               web.browser_host())
        except (Conflict, Unavailable):
            display = None
    reply, status = request_reply(r, 0, machine_id=machine_id, display=display)
    return web.no_store(reply), status


@bp.get("/bases/<id:base_id>/policy")
def base_policy_get(base_id: int) -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(policies.get(s, web.current(), base_id))


@bp.patch("/bases/<id:base_id>/policy")
def base_policy_update(base_id: int) -> Any:
    return jsonify(policies.update(front(), web.current(), base_id, body()))


@bp.get("/machines")
def machines_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_machines(s, web.current()))


@bp.post("/machines")
def machines_create() -> Any:
    req_id = machines.create_machine(front(), web.current(), body())
    return request_reply(req_id, wait_arg())


@bp.get("/machines/<id:machine_id>")
def machine_get(machine_id: int) -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.machine_json(machines.visible_machine(s, web.current(),
                                                                      machine_id)))


# Opening a display changes the firewall and the password: POST only, never a GET.
@bp.post("/machines/<id:machine_id>/display")
def machine_display(machine_id: int) -> Any:
    info, _ = displays.open_display(front(), web.current(), machine_id, web.client_ip(),
                                    wait_arg(10.0) or 10.0, web.browser_host())
    return web.no_store(jsonify(info))


@bp.post("/machines/<id:machine_id>/display.vv")
def machine_vv(machine_id: int) -> Any:
    from ravada.display import render_vv

    fs = front()
    info, m = displays.open_display(fs, web.current(), machine_id, web.client_ip(),
                                    wait_arg(10.0) or 10.0, web.browser_host())
    tls = bool(fs.config.display.spice_tls and (info.get("spice") or {}).get("tls_port"))
    ca_pem = None
    if tls:
        try:
            with open(fs.config.display.spice_ca_file, encoding="ascii") as f:
                ca_pem = f.read()
        except OSError as exc:
            raise Unavailable(_("SPICE TLS is on but its CA is unreadable: %(strerror)s",
                                strerror=exc.strerror)) from None
    # The subject of the node the machine runs on (its backend says), else this host's.
    subject = ((info.get("spice") or {}).get("host_subject")
               or fs.config.display.spice_host_subject or None)
    text = render_vv(info, m.name, tls=tls, ca_pem=ca_pem, host_subject=subject)
    resp = Response(text, mimetype="application/x-virt-viewer")
    resp.headers["Content-Disposition"] = f'attachment; filename="{m.name}.vv"'
    return web.no_store(resp)


@bp.post("/machines/<id:machine_id>/console")
def machine_console(machine_id: int) -> Any:
    ticket = consoles.ticket(front(), web.current(), machine_id, web.client_ip(),
                             web.site()["console_ws_url"], wait_arg(10.0) or 10.0)
    return web.no_store(jsonify(ticket))


@bp.post("/machines/<id:machine_id>/screenshot")
def machine_screenshot(machine_id: int) -> Any:
    req_id = displays.request_screenshot(front(), web.current(), machine_id)
    return request_reply(req_id, wait_arg())


@bp.get("/machines/<id:machine_id>/screenshot.png")
def machine_screenshot_png(machine_id: int) -> Any:
    path = displays.screenshot_path(front(), web.current(), machine_id)
    return web.no_store(send_file(path, mimetype="image/png", max_age=0))


@bp.post("/machines/<id:machine_id>/public")
def machine_public(machine_id: int) -> Any:
    require_admin()
    public = validate.boolean(body().get("public", True), "public")
    return jsonify(machines.set_public(front(), web.current(), machine_id, public))


def _action_view(action: str) -> Any:
    def view(machine_id: int) -> Any:
        data = body()
        timeout = None
        if action == "shutdown" and "timeout" in data:
            timeout = validate.timeout(data["timeout"], front().config.queue.request_timeout)
        req_id = machines.machine_action(front(), web.current(), machine_id, action,
                                         web.client_ip(), timeout)
        return request_reply(req_id, wait_arg())

    view.__name__ = f"machine_{action}"
    view.__doc__ = f"Submit {action} for a machine."
    return view


for _action in machines.USER_ACTIONS + machines.ADMIN_ACTIONS:
    bp.add_url_rule(f"/machines/<id:machine_id>/{_action}", endpoint=f"machine_{_action}",
                    view_func=_action_view(_action), methods=["POST"])


@bp.get("/isos")
def isos_list() -> Any:
    require_admin()
    return jsonify(machines.list_isos(front()))
