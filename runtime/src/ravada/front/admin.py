"""Administration pages: machines, users, the requests log and settings (plain forms + CSRF)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ravada.front import (
    accounts,
    machine_settings,
    machines,
    policies,
    requests_log,
    settings,
    web,
)
from ravada.front.dbutil import write_session
from ravada.front.errors import BadInput, FrontError
from ravada.front.i18n import action_label
from ravada.front.state import front

bp = Blueprint("admin", __name__, url_prefix="/admin")
POLICY_FIELDS = ("pool_size", "pool_started", "run_timeout", "shutdown_grace")
MACHINE_ACTIONS = machines.ADMIN_ACTIONS + (
    "start", "shutdown", "force_shutdown", "hibernate", "reboot", "resume", "remove")


def _back(endpoint: str, **kw: Any) -> Any:
    return redirect(url_for(endpoint, **kw))


@bp.get("/")
@web.admin_required
def home() -> Any:
    return _back("admin.machines_page")


@bp.get("/machines")
@web.admin_required
def machines_page() -> Any:
    with front().db.sessionmaker() as s:
        tree = machines.machine_tree(machines.list_machines(s, web.current()))
        clones = machines.clone_counts(s)
    return render_template("admin/machines.html", tree=tree, isos=machines.list_isos(front()),
                           clones=clones, actions_for=machine_settings.actions_for)


@bp.post("/machines")
@web.admin_required
def machines_create() -> Any:
    return web.form_post(
        lambda: machines.create_machine(front(), web.current(), request.form.to_dict()),
        lambda rid: _("Creating %(name)s (request %(id)s).", name=request.form.get("name"),
                      id=rid),
        "admin.machines_page")


def _to_page(machine_id: int, rid: int | None = None) -> Any:
    """Back to where the form was: the machine's own page or the list."""
    if request.form.get("next") == "machine":
        from ravada.front.admin_machine import back_to
        return back_to(machine_id, rid)
    return _back("admin.machines_page")


@bp.post("/machines/<id:machine_id>")
@web.admin_required
def machine_post(machine_id: int) -> Any:
    action = request.form.get("action", "")

    def run() -> tuple[str, int | None]:
        """The success text and the request queued (None for public/private)."""
        if action in machine_settings.DESTRUCTIVE and request.form.get("confirm") != "yes":
            raise BadInput(_("%(action)s needs a confirmation: tick the box next to its "
                             "button", action=action_label(action)))
        if action in ("public", "private"):
            m = machines.set_public(front(), web.current(), machine_id, action == "public")
            if m["is_public"]:
                return _("%(name)s is now public.", name=m["name"]), None
            return _("%(name)s is now private.", name=m["name"]), None
        if action in MACHINE_ACTIONS:
            rid = machines.machine_action(front(), web.current(), machine_id, action,
                                          web.client_ip())
            return _("%(action)s requested (request %(id)s).", action=action_label(action),
                     id=rid), rid
        raise BadInput(_("unknown action"))

    return web.form_post(run, lambda done: done[0],
                         lambda done: _to_page(machine_id, done[1] if done else None))


@bp.post("/machines/<id:machine_id>/policy")
@web.admin_required
def machine_policy(machine_id: int) -> Any:
    """The policy form of a base: unchecked boxes are not sent, so they mean false."""
    form = {k: v for k, v in request.form.items() if k in POLICY_FIELDS}
    for box in ("volatile", "shutdown_disconnected"):
        form[box] = box in request.form
    return web.form_post(lambda: policies.update(front(), web.current(), machine_id, form),
                         _("Policy saved."), lambda _done: _to_page(machine_id))


@bp.get("/users")
@web.admin_required
def users_page() -> Any:
    with front().db.sessionmaker() as s:
        users = accounts.list_users(s)
    return render_template("admin/users.html", users=users)


@bp.post("/users")
@web.admin_required
def users_create() -> Any:
    form = request.form.to_dict()
    form["is_admin"] = "is_admin" in request.form
    return web.form_post(lambda: accounts.create_user(front(), web.current(), form),
                         lambda u: _("User %(name)s created.", name=u["name"]),
                         "admin.users_page")


@bp.post("/users/<id:user_id>")
@web.admin_required
def user_post(user_id: int) -> Any:
    op = request.form.get("op", "")
    changes: dict[str, Any] = {
        "admin": {"is_admin": True}, "unadmin": {"is_admin": False},
        "disable": {"is_disabled": True}, "enable": {"is_disabled": False},
        "password": {"password": request.form.get("password", "")},
    }.get(op, {})

    def run() -> dict[str, Any]:
        if not changes:
            raise BadInput(_("unknown operation"))
        u = accounts.update_user(front(), web.current(), user_id, changes)
        if user_id == web.current().id:  # your own reset keeps this session
            web.keep_session(accounts.session_version(front(), user_id))
        return u

    return web.form_post(run, lambda u: _("User %(name)s updated.", name=u["name"]),
                         "admin.users_page")


@bp.get("/requests")
@web.admin_required
def requests_page() -> Any:
    try:
        filters = requests_log.filters(request.args)
    except FrontError as exc:
        flash(exc.detail, "error")
        filters = {}
    with front().db.sessionmaker() as s:
        rows = requests_log.search(s, web.current(), filters)
    return render_template("admin/requests.html", rows=rows, filters=filters,
                           statuses=requests_log.STATUSES)


@bp.get("/settings")
@web.admin_required
def settings_page() -> Any:
    with front().db.sessionmaker() as s:
        values = settings.get_all(s)
    return render_template("admin/settings.html", values=values, keys=settings.KEYS)


@bp.post("/settings")
@web.admin_required
def settings_post() -> Any:
    changes = {k: request.form[k] for k in settings.KEYS if k in request.form}

    def run() -> None:
        with write_session(front().db) as s:
            settings.update(s, changes)

    return web.form_post(run, _("Settings saved."), "admin.settings_page")



# The groups and access-list pages and the machine page live in their own modules, on
# this blueprint.
from ravada.front import admin_groups, admin_machine  # noqa: E402, F401
