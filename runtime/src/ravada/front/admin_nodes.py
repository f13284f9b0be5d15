"""/admin/nodes: the hypervisor nodes with state, load, memory and desktops; enable,
disable, drain. The views hang on the ``admin`` blueprint; importing this module registers
them.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from ravada.front import nodes as service
from ravada.front import web
from ravada.front.admin import bp
from ravada.front.errors import FrontError
from ravada.front.state import front


@bp.get("/nodes")
@web.admin_required
def nodes_page() -> Any:
    return render_template("admin/nodes.html", nodes=service.list_nodes(front(), web.current()))


@bp.post("/nodes/<id:node_id>")
@web.admin_required
def node_post(node_id: int) -> Any:
    try:
        change = service.form_change(request.form.get("op", ""))
        node = service.update_node(front(), web.current(), node_id, change)
        flash(f"Node {node['name']}: {node['state']}.", "ok")
    except FrontError as exc:
        flash(exc.detail, "error")
    return redirect(url_for("admin.nodes_page"))
