"""/api/v1/nodes: the hypervisor nodes (admin); PATCH sets enabled and draining.

The views hang on the API blueprint (its authentication and CSRF check apply); importing
this module registers them.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from ravada.front import nodes as service
from ravada.front import web
from ravada.front.api import body, bp
from ravada.front.state import front


@bp.get("/nodes")
def nodes_list() -> Any:
    return jsonify(service.list_nodes(front(), web.current()))


@bp.get("/nodes/<id:node_id>")
def nodes_get(node_id: int) -> Any:
    return jsonify(service.get_node(front(), web.current(), node_id))


@bp.patch("/nodes/<id:node_id>")
def nodes_update(node_id: int) -> Any:
    return jsonify(service.update_node(front(), web.current(), node_id, body()))
