"""/admin/nodes: the hypervisor nodes with state, load, memory and desktops; enable,
disable, drain. The views hang on the ``admin`` blueprint; importing this module registers
them.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_babel import gettext as _

from ravada.front import nodes as service
from ravada.front import web
from ravada.front.admin import bp
from ravada.front.i18n import state_label
from ravada.front.state import front


@bp.get("/nodes")
@web.admin_required
def nodes_page() -> Any:
    return render_template("admin/nodes.html", nodes=service.list_nodes(front(), web.current()))


@bp.post("/nodes/<id:node_id>")
@web.admin_required
def node_post(node_id: int) -> Any:
    def run() -> dict[str, Any]:
        change = service.form_change(request.form.get("op", ""))
        return service.update_node(front(), web.current(), node_id, change)

    return web.form_post(run, lambda node: _("Node %(name)s: %(state)s.", name=node["name"],
                                             state=state_label(node["state"])),
                         "admin.nodes_page")
