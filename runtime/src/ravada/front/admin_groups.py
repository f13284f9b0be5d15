"""Admin pages for groups (with their members) and for a base's access list.

The views hang on the ``admin`` blueprint (endpoints ``admin.*``, URLs under
/admin); importing this module registers them.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_babel import gettext as _

from ravada.front import accounts, web
from ravada.front import groups as service
from ravada.front.admin import bp
from ravada.front.errors import BadInput
from ravada.front.state import front


@bp.get("/groups")
@web.admin_required
def groups_page() -> Any:
    groups = service.list_groups(front(), web.current())
    with front().db.sessionmaker() as s:
        users = [u["name"] for u in accounts.list_users(s)]
    return render_template("admin/groups.html", groups=groups, users=users)


@bp.post("/groups")
@web.admin_required
def groups_create() -> Any:
    return web.form_post(
        lambda: service.create_group(front(), web.current(), request.form.to_dict()),
        lambda g: _("Group %(name)s created.", name=g["name"]), "admin.groups_page")


@bp.post("/groups/<id:group_id>")
@web.admin_required
def group_post(group_id: int) -> Any:
    op, user = request.form.get("op", ""), request.form.get("user", "")

    def run() -> str:
        """The change, and its success text."""
        if op == "delete":
            service.delete_group(front(), web.current(), group_id)
            return _("Group deleted.")
        if op == "limit":
            g = service.update_group(front(), web.current(), group_id,
                                     {"max_running": request.form.get("max_running", "")})
            limit = g["max_running"]
            text = (_("none of its own") if limit is None else str(limit) if limit
                    else _("no limit"))
            return _("Running limit of %(name)s: %(limit)s.", name=g["name"], limit=text)
        if op in ("add", "remove"):
            service.set_member(front(), web.current(), group_id, user, op == "add")
            if op == "add":
                return _("%(user)s added.", user=user)
            return _("%(user)s removed.", user=user)
        raise BadInput(_("unknown operation"))

    return web.form_post(run, lambda text: text, "admin.groups_page")


@bp.post("/bases/<id:base_id>/access")
@web.admin_required
def base_access_post(base_id: int) -> Any:
    """The access list from the base's row: no group ticked means everyone."""
    def run() -> list[dict[str, Any]]:
        ids = service.group_ids(request.form.getlist("groups"))
        return service.set_base_access(front(), web.current(), base_id, ids)

    back = request.form.get("next") == "machine"
    return web.form_post(
        run, lambda rows: _("Access list saved: %(names)s.",
                            names=", ".join(g["name"] for g in rows) or _("everyone")),
        "admin.machine_page" if back else "admin.machines_page",
        **({"machine_id": base_id} if back else {}))
