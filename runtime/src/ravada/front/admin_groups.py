"""Admin pages for groups (with their members) and for a base's access list.

The views hang on the ``admin`` blueprint (endpoints ``admin.*``, URLs under
/admin); importing this module registers them.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from ravada.front import accounts, web
from ravada.front import groups as service
from ravada.front.admin import bp
from ravada.front.errors import FrontError
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
    try:
        g = service.create_group(front(), web.current(), request.form.to_dict())
        flash(f"Group {g['name']} created.", "ok")
    except FrontError as exc:
        flash(exc.detail, "error")
    return redirect(url_for("admin.groups_page"))


@bp.post("/groups/<id:group_id>")
@web.admin_required
def group_post(group_id: int) -> Any:
    op, user = request.form.get("op", ""), request.form.get("user", "")
    try:
        if op == "delete":
            service.delete_group(front(), web.current(), group_id)
            flash("Group deleted.", "ok")
        elif op == "limit":
            g = service.update_group(front(), web.current(), group_id,
                                     {"max_running": request.form.get("max_running", "")})
            limit = g["max_running"]
            flash(f"Running limit of {g['name']}: "
                  f"{'none of its own' if limit is None else limit or 'no limit'}.", "ok")
        elif op in ("add", "remove"):
            service.set_member(front(), web.current(), group_id, user, op == "add")
            flash(f"{user} {'added' if op == 'add' else 'removed'}.", "ok")
        else:
            flash("unknown operation", "error")
    except FrontError as exc:
        flash(exc.detail, "error")
    return redirect(url_for("admin.groups_page"))


@bp.post("/bases/<id:base_id>/access")
@web.admin_required
def base_access_post(base_id: int) -> Any:
    """The access list from the base's row: no group ticked means everyone."""
    try:
        ids = service.group_ids(request.form.getlist("groups"))
        rows = service.set_base_access(front(), web.current(), base_id, ids)
        names = ", ".join(g["name"] for g in rows) or "everyone"
        flash(f"Access list saved: {names}.", "ok")
    except FrontError as exc:
        flash(exc.detail, "error")
    if request.form.get("next") == "machine":
        return redirect(url_for("admin.machine_page", machine_id=base_id))
    return redirect(url_for("admin.machines_page"))
