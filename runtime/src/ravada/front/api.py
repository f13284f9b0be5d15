"""The JSON API under /api/v1: everything the pages do, for scripts and automation.

Authentication: ``Authorization: Bearer <token>`` (tokens from POST /tokens), or
the session cookie plus an ``X-CSRFToken`` header on state-changing requests.
Errors are ``{"error": code, "detail": text}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request, send_file
from flask_wtf.csrf import generate_csrf

from ravada import queue
from ravada.db import Request
from ravada.front import (
    accounts,
    consoles,
    displays,
    machines,
    policies,
    settings,
    totp,
    validate,
    web,
)
from ravada.front import groups as group_pages
from ravada.front.dbutil import write_session
from ravada.front.errors import BadInput, Conflict, Forbidden, Unauthorized, Unavailable
from ravada.front.openapi import document
from ravada.front.state import front

bp = Blueprint("api", __name__, url_prefix=web.API_PREFIX)
PUBLIC = {"api.openapi", "api.session_login", "api.tokens_create"}
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


@bp.before_request
def _authenticate() -> None:
    if g.auth == "bad_token":
        raise Unauthorized("invalid or revoked API token")
    if request.endpoint in PUBLIC:
        return
    if web.viewer() is None:
        raise Unauthorized("log in or send an API token (Authorization: Bearer …)")
    if g.auth == "session" and request.method in MUTATING:
        from ravada.front import csrf

        csrf.protect()


def _body() -> dict[str, Any]:
    """The JSON object sent with the request ({} when there is none)."""
    if not request.data:
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    return data


def _admin() -> None:
    if not web.current().is_admin:
        raise Forbidden("administrators only")


def _wait(default: float = 0.0) -> float:
    return validate.wait_seconds(request.args.get("wait"), default=default)


def _request_reply(req: int | Request, wait: float, **extra: Any) -> tuple[Response, int]:
    """A submitted request: 202 while pending, 200 when done, 409 when it failed.

    ``req``: its id, or the row the caller already read (no second read)."""
    r = req if isinstance(req, Request) else machines.get_request(front(), web.current(), req,
                                                                  wait)
    view = machines.request_json(r, web.current())
    body = {"request_id": r.id, "status": r.status, **extra, "request": view}
    if r.status == queue.FAILED:
        body = {"error": "request_failed", "detail": r.error or "failed", **body}
        return jsonify(body), 409
    return jsonify(body), 200 if r.status == queue.DONE else 202


# ---------------------------------------------------------------- documents and sessions

@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(document())


@bp.post("/session")
def session_login() -> Any:
    data = _body()
    v = totp.api_login(front(), data, web.client_ip())  # {name, password[, code]}
    web.sign_in(v)
    return jsonify({"user": {"id": v.id, "name": v.name, "is_admin": v.is_admin},
                    "csrf_token": generate_csrf()})


@bp.get("/session")
def session_info() -> Any:
    v = web.current()
    body: dict[str, Any] = {"user": {"id": v.id, "name": v.name, "is_admin": v.is_admin},
                            "auth": g.auth}
    if g.auth == "session":
        body["csrf_token"] = generate_csrf()
    return jsonify(body)


@bp.delete("/session")
def session_logout() -> Any:
    web.sign_out()
    return "", 204


@bp.post("/password")
def password_change() -> Any:
    data = _body()
    version = accounts.change_own_password(front(), web.current(), data.get("password"),
                                           data.get("new_password"), web.client_ip())
    web.keep_session(version)
    return "", 204


# ---------------------------------------------------------------- API tokens

@bp.get("/tokens")
def tokens_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(accounts.list_tokens(s, web.current()))


@bp.post("/tokens")
def tokens_create() -> Any:
    """With a session (or token): a token for that user. Without: {name, password} required."""
    data = _body()
    if "password" in data:
        v = totp.api_login(front(), data, web.client_ip())
        if totp.must_enrol(front(), v):  # a token is made after a full login only
            raise Forbidden("set up two-factor login first (log in with POST /api/v1/session)",
                            extra={"reason": "totp_enrolment_required"})
    elif web.viewer() is not None:
        v = web.current()
        if g.auth == "session":
            from ravada.front import csrf

            csrf.protect()
    else:
        raise Unauthorized("log in, or send {\"name\", \"password\"} to get a token")
    token = accounts.create_token(front(), v, data.get("label"))
    return jsonify(token), 201


@bp.delete("/tokens/<id:token_id>")
def tokens_delete(token_id: int) -> Any:
    accounts.delete_token(front(), web.current(), token_id)
    return "", 204


# ---------------------------------------------------------------- bases and machines

@bp.get("/bases")
def bases_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_bases(s, web.current()))


@bp.post("/bases/<id:base_id>/start")
def base_start(base_id: int) -> Any:
    """The user's click on a base. With ?wait=N, waits and adds the display info."""
    fs, v = front(), web.current()
    wait = _wait()
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
    reply, status = _request_reply(r, 0, machine_id=machine_id, display=display)
    return web.no_store(reply), status


@bp.get("/bases/<id:base_id>/policy")
def base_policy_get(base_id: int) -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(policies.get(s, web.current(), base_id))


@bp.patch("/bases/<id:base_id>/policy")
def base_policy_update(base_id: int) -> Any:
    return jsonify(policies.update(front(), web.current(), base_id, _body()))


@bp.get("/machines")
def machines_list() -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_machines(s, web.current()))


@bp.post("/machines")
def machines_create() -> Any:
    req_id = machines.create_machine(front(), web.current(), _body())
    return _request_reply(req_id, _wait())


@bp.get("/machines/<id:machine_id>")
def machine_get(machine_id: int) -> Any:
    with front().db.sessionmaker() as s:
        return jsonify(machines.machine_json(machines.visible_machine(s, web.current(),
                                                                      machine_id)))


# Opening a display changes the firewall and the password: POST only, never a GET.
@bp.post("/machines/<id:machine_id>/display")
def machine_display(machine_id: int) -> Any:
    info, _ = displays.open_display(front(), web.current(), machine_id, web.client_ip(),
                                    _wait(10.0) or 10.0, web.browser_host())
    return web.no_store(jsonify(info))


@bp.post("/machines/<id:machine_id>/display.vv")
def machine_vv(machine_id: int) -> Any:
    from ravada.display import render_vv

    fs = front()
    info, m = displays.open_display(fs, web.current(), machine_id, web.client_ip(),
                                    _wait(10.0) or 10.0, web.browser_host())
    tls = bool(fs.config.display.spice_tls and (info.get("spice") or {}).get("tls_port"))
    ca_pem = None
    if tls:
        try:
            with open(fs.config.display.spice_ca_file, encoding="ascii") as f:
                ca_pem = f.read()
        except OSError as exc:
            raise Unavailable(f"SPICE TLS is on but its CA is unreadable: {exc.strerror}") from None
    text = render_vv(info, m.name, tls=tls, ca_pem=ca_pem,
                     host_subject=fs.config.display.spice_host_subject or None)
    resp = Response(text, mimetype="application/x-virt-viewer")
    resp.headers["Content-Disposition"] = f'attachment; filename="{m.name}.vv"'
    return web.no_store(resp)


@bp.post("/machines/<id:machine_id>/console")
def machine_console(machine_id: int) -> Any:
    ticket = consoles.ticket(front(), web.current(), machine_id, web.client_ip(),
                             web.site()["console_ws_url"], _wait(10.0) or 10.0)
    return web.no_store(jsonify(ticket))


@bp.post("/machines/<id:machine_id>/screenshot")
def machine_screenshot(machine_id: int) -> Any:
    req_id = displays.request_screenshot(front(), web.current(), machine_id)
    return _request_reply(req_id, _wait())


@bp.get("/machines/<id:machine_id>/screenshot.png")
def machine_screenshot_png(machine_id: int) -> Any:
    path = displays.screenshot_path(front(), web.current(), machine_id)
    return web.no_store(send_file(path, mimetype="image/png", max_age=0))


@bp.post("/machines/<id:machine_id>/public")
def machine_public(machine_id: int) -> Any:
    _admin()
    public = validate.boolean(_body().get("public", True), "public")
    return jsonify(machines.set_public(front(), web.current(), machine_id, public))


def _action_view(action: str) -> Any:
    def view(machine_id: int) -> Any:
        data = _body()
        timeout = None
        if action == "shutdown" and "timeout" in data:
            timeout = validate.timeout(data["timeout"], front().config.queue.request_timeout)
        req_id = machines.machine_action(front(), web.current(), machine_id, action,
                                         web.client_ip(), timeout)
        return _request_reply(req_id, _wait())

    view.__name__ = f"machine_{action}"
    view.__doc__ = f"Submit {action} for a machine."
    return view


for _action in machines.USER_ACTIONS + machines.ADMIN_ACTIONS:
    bp.add_url_rule(f"/machines/<id:machine_id>/{_action}", endpoint=f"machine_{_action}",
                    view_func=_action_view(_action), methods=["POST"])


@bp.get("/isos")
def isos_list() -> Any:
    _admin()
    return jsonify(machines.list_isos(front()))


# ---------------------------------------------------------------- requests

@bp.get("/requests")
def requests_list() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in (queue.REQUESTED, queue.WORKING) + queue.FINAL:
        raise BadInput("status: one of requested, working, done, failed")
    command = request.args.get("command") or None
    if command is not None:
        command = validate.text(command, "command", max_len=32)
    limit = validate.integer(request.args.get("limit", "100"), "limit", lo=1, hi=1000)
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_requests(s, web.current(), status=status, command=command,
                                              limit=limit))


@bp.get("/requests/<id:req_id>")
def request_get(req_id: int) -> Any:
    r = machines.get_request(front(), web.current(), req_id, _wait())
    return jsonify(machines.request_json(r, web.current()))


# ---------------------------------------------------------------- users and settings

@bp.get("/users")
def users_list() -> Any:
    _admin()
    with front().db.sessionmaker() as s:
        return jsonify(accounts.list_users(s))


@bp.post("/users")
def users_create() -> Any:
    return jsonify(accounts.create_user(front(), web.current(), _body())), 201


@bp.patch("/users/<id:user_id>")
def users_update(user_id: int) -> Any:
    out = accounts.update_user(front(), web.current(), user_id, _body())
    if user_id == web.current().id:  # an admin resetting their own password stays in
        web.keep_session(accounts.session_version(front(), user_id))
    return jsonify(out)


# ---------------------------------------------------------------- groups and access lists

@bp.get("/groups")
def groups_list() -> Any:
    return jsonify(group_pages.list_groups(front(), web.current()))


@bp.post("/groups")
def groups_create() -> Any:
    return jsonify(group_pages.create_group(front(), web.current(), _body())), 201


@bp.patch("/groups/<id:group_id>")
def groups_update(group_id: int) -> Any:
    return jsonify(group_pages.update_group(front(), web.current(), group_id, _body()))


@bp.delete("/groups/<id:group_id>")
def groups_delete(group_id: int) -> Any:
    group_pages.delete_group(front(), web.current(), group_id)
    return "", 204


@bp.put("/groups/<id:group_id>/members/<id:user_id>")
def groups_member_add(group_id: int, user_id: int) -> Any:
    return jsonify(group_pages.set_member(front(), web.current(), group_id, user_id, True))


@bp.delete("/groups/<id:group_id>/members/<id:user_id>")
def groups_member_remove(group_id: int, user_id: int) -> Any:
    return jsonify(group_pages.set_member(front(), web.current(), group_id, user_id, False))


@bp.get("/bases/<id:base_id>/access")
def base_access_get(base_id: int) -> Any:
    return jsonify({"groups": group_pages.base_access(front(), web.current(), base_id)})


@bp.put("/bases/<id:base_id>/access")
def base_access_put(base_id: int) -> Any:
    _admin()
    ids = group_pages.group_ids(_body().get("groups"))
    return jsonify({"groups": group_pages.set_base_access(front(), web.current(), base_id, ids)})


@bp.get("/settings")
def settings_get() -> Any:
    _admin()
    with front().db.sessionmaker() as s:
        return jsonify(settings.get_all(s))


@bp.patch("/settings")
def settings_update() -> Any:
    _admin()
    with write_session(front().db) as s:
        return jsonify(settings.update(s, _body()))
