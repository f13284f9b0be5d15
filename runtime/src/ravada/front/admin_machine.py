"""The admin machine page ``/admin/machines/<id>``: summary, actions, hardware, description.

The views hang on the ``admin`` blueprint (endpoints ``admin.*``); importing this module
registers them. Every change is a plain form POST with CSRF that redirects back to the page
(with ``?request=<id>`` when it queued one: the page follows that request in place).
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ravada.auth import groups as group_store
from ravada.front import machine_settings, machines, web
from ravada.front.admin import bp
from ravada.front.markdown import render as markdown
from ravada.front.state import front

HARDWARE_FORMS = ("size", "devices", "iso", "add_disk", "grow_disk")


def back_to(machine_id: int, rid: int | None = None) -> Any:
    kw = {"request": rid} if rid else {}
    return redirect(url_for("admin.machine_page", machine_id=machine_id, **kw))


@bp.get("/machines/<id:machine_id>")
@web.admin_required
def machine_page(machine_id: int) -> Any:
    data = machine_settings.page(front(), web.current(), machine_id)
    with front().db.sessionmaker() as s:
        groups, access = group_store.list_groups(s), group_store.access_map(s)
    follow = request.args.get("request", "")
    return render_template(
        "admin/machine.html", **data, isos=machines.list_isos(front()), groups=groups,
        access=access.get(machine_id, ()), follow=follow if follow.isdigit() else "",
        description_html=markdown(data["m"]["description"]))


@bp.post("/machines/<id:machine_id>/hardware/<section>")
@web.admin_required
def machine_hardware(machine_id: int, section: str) -> Any:
    if section not in HARDWARE_FORMS:
        flash(_("No hardware form %(name)s.", name=repr(section)), "error")
        return back_to(machine_id)

    def run() -> int:
        change = machine_settings.change_from_form(request.form.to_dict(), section)
        return machine_settings.submit_hardware(front(), web.current(), machine_id, change)

    return web.form_post(run, lambda rid: _("Hardware change requested (request %(id)s).",
                                            id=rid),
                         lambda rid: back_to(machine_id, rid))


@bp.post("/machines/<id:machine_id>/description")
@web.admin_required
def machine_description(machine_id: int) -> Any:
    return web.form_post(
        lambda: machine_settings.set_description(front(), web.current(), machine_id,
                                                 request.form.get("description", "")),
        _("Description saved."), lambda _done: back_to(machine_id))
