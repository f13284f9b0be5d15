"""/api/v1 requests: the user's (or, for admins, everyone's) queue entries."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_babel import gettext as _

from ravada import queue
from ravada.front import machines, validate, web
from ravada.front.api import bp, wait_arg
from ravada.front.errors import BadInput
from ravada.front.state import front


@bp.get("/requests")
def requests_list() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in (queue.REQUESTED, queue.WORKING) + queue.FINAL:
        raise BadInput(_("status: one of requested, working, done, failed"))
    command = request.args.get("command") or None
    if command is not None:
        command = validate.text(command, "command", max_len=32)
    limit = validate.integer(request.args.get("limit", "100"), "limit", lo=1, hi=1000)
    with front().db.sessionmaker() as s:
        return jsonify(machines.list_requests(s, web.current(), status=status, command=command,
                                              limit=limit))


@bp.get("/requests/<id:req_id>")
def request_get(req_id: int) -> Any:
    r = machines.get_request(front(), web.current(), req_id, wait_arg())
    return jsonify(machines.request_json(r, web.current()))
