"""/api/v1 users, groups, base access lists and site settings (mostly admin)."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from ravada.front import accounts, settings, web
from ravada.front import groups as group_pages
from ravada.front.api import body, bp, require_admin
from ravada.front.dbutil import write_session
from ravada.front.state import front


@bp.get("/users")
def users_list() -> Any:
    require_admin()
    with front().db.sessionmaker() as s:
        return jsonify(accounts.list_users(s))


@bp.post("/users")
def users_create() -> Any:
    return jsonify(accounts.create_user(front(), web.current(), body())), 201


@bp.patch("/users/<id:user_id>")
def users_update(user_id: int) -> Any:
    out = accounts.update_user(front(), web.current(), user_id, body())
    if user_id == web.current().id:  # an admin resetting their own password stays in
        web.keep_session(accounts.session_version(front(), user_id))
    return jsonify(out)


@bp.get("/groups")
def groups_list() -> Any:
    return jsonify(group_pages.list_groups(front(), web.current()))


@bp.post("/groups")
def groups_create() -> Any:
    return jsonify(group_pages.create_group(front(), web.current(), body())), 201


@bp.patch("/groups/<id:group_id>")
def groups_update(group_id: int) -> Any:
    return jsonify(group_pages.update_group(front(), web.current(), group_id, body()))


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
    require_admin()
    ids = group_pages.group_ids(body().get("groups"))
    return jsonify({"groups": group_pages.set_base_access(front(), web.current(), base_id, ids)})


@bp.get("/settings")
def settings_get() -> Any:
    require_admin()
    with front().db.sessionmaker() as s:
        return jsonify(settings.get_all(s))


@bp.patch("/settings")
def settings_update() -> Any:
    require_admin()
    with write_session(front().db) as s:
        return jsonify(settings.update(s, body()))
