"""Groups and base access lists for the admin pages and the API (admins only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ravada.auth import groups as store
from ravada.front import validate
from ravada.front.dbutil import write_session
from ravada.front.errors import BadInput, Conflict, Forbidden, Invalid, NotFound
from ravada.front.i18n import say
from ravada.front.state import FrontState, Viewer

T = TypeVar("T")
_ERRORS = {"not_found": NotFound, "conflict": Conflict, "invalid": Invalid}


@contextmanager
def _admin_write(fs: FrontState, viewer: Viewer) -> Iterator[Session]:
    if not viewer.is_admin:
        raise Forbidden(_("administrators only"))
    try:
        with write_session(fs.db) as s:
            yield s
    except store.GroupError as exc:
        raise _ERRORS[exc.kind](say(exc)) from None


def _read(fs: FrontState, viewer: Viewer, fn: Callable[[Session], T]) -> T:
    if not viewer.is_admin:
        raise Forbidden(_("administrators only"))
    with fs.db.sessionmaker() as s:
        try:
            return fn(s)
        except store.GroupError as exc:
            raise _ERRORS[exc.kind](say(exc)) from None


def list_groups(fs: FrontState, viewer: Viewer) -> list[dict[str, Any]]:
    return _read(fs, viewer, store.list_groups)


def create_group(fs: FrontState, viewer: Viewer, data: dict[str, Any]) -> dict[str, Any]:
    with _admin_write(fs, viewer) as s:
        return store.group_json(store.create_group(s, data.get("name"),
                                                   data.get("description", ""),
                                                   data.get("max_running")))


def update_group(fs: FrontState, viewer: Viewer, group_id: int,
                 data: dict[str, Any]) -> dict[str, Any]:
    """Change a group's ``max_running`` (null: no limit of its own); other keys refused."""
    unknown = sorted(set(data) - {"max_running"})
    if unknown or not data:
        raise BadInput(_("unknown group field(s): %(value)s (known: max_running)",
                         value=', '.join(unknown)[:200] or '(none given)'))
    with _admin_write(fs, viewer) as s:
        g = store.set_max_running(s, group_id, data["max_running"])
        return next(x for x in store.list_groups(s) if x["id"] == g.id)


def delete_group(fs: FrontState, viewer: Viewer, group_id: int) -> None:
    with _admin_write(fs, viewer) as s:
        store.delete_group(s, group_id)


def set_member(fs: FrontState, viewer: Viewer, group_id: int, user: int | str,
               present: bool) -> dict[str, Any]:
    if isinstance(user, str):
        user = validate.username(user)
    with _admin_write(fs, viewer) as s:
        g = store.set_member(s, group_id, user, present)
        return next(x for x in store.list_groups(s) if x["id"] == g.id)


def base_access(fs: FrontState, viewer: Viewer, base_id: int) -> list[dict[str, Any]]:
    return _read(fs, viewer, lambda s: store.base_access(s, base_id))


def group_ids(value: Any) -> list[int]:
    """``{"groups": [ids]}`` of the API, or the form's list of id strings."""
    if not isinstance(value, list) or len(value) > 200:
        raise BadInput(_("groups: expected a list of group ids ([] for everyone)"))
    return [validate.integer(v, "groups[]", lo=1, hi=2**31 - 1) for v in value]


def set_base_access(fs: FrontState, viewer: Viewer, base_id: int,
                    ids: list[int]) -> list[dict[str, Any]]:
    with _admin_write(fs, viewer) as s:
        return store.set_base_access(s, base_id, ids)
