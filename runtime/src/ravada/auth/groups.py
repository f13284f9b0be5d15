"""Groups of users and base access lists (no web, no argparse: front and CLI both use this).

Every membership is a row of ``user_group_members``: admins manage those of
``local`` groups; those of ``ldap`` groups (rows made the first time a directory
login reports the group) are replaced at each directory login from what the
directory said, which is also kept on the user row (``directory_groups``, with
the time). A base with no access rows is for everyone it is published to; with
rows, only for members of those groups. Directory group names match
case-insensitively, like LDAP does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, true
from sqlalchemy.orm import Session

from ravada import policy as rpolicy
from ravada.db import BaseAccess, Group, GroupMember, Machine, User
from ravada.texts import Refusal

LOCAL, DIRECTORY = "local", "ldap"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class GroupError(Refusal):
    """A refused group operation; ``kind`` is not_found, conflict or invalid."""

    def __init__(self, kind: str, template: str, **values: Any) -> None:
        super().__init__(template, **values)
        self.kind = kind


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise GroupError("invalid", "group name: 1-64 letters, digits and . _ - , starting "
                         "with a letter or digit")
    return name


def group_json(g: Group, members: list[str] | None = None) -> dict[str, Any]:
    return {"id": g.id, "name": g.name, "source": g.source, "description": g.description,
            "max_running": g.max_running,
            "members": members if members is not None else []}


def get_group(s: Session, ref: int | str) -> Group:
    """A group by id, or by name (local first, then directory)."""
    if isinstance(ref, int):
        g = s.get(Group, ref) if 0 < ref < 2**31 else None
    else:
        g = s.scalar(select(Group).where(Group.name == ref).order_by(Group.source != LOCAL))
    if g is None:
        raise GroupError("not_found", "no group %(ref)s", ref=repr(ref))
    return g


def check_max_running(value: Any) -> int | None:
    """A group's running-machines limit: None for none of its own, else 0 (no limit)..1000."""
    try:
        return rpolicy.check_limit(value)
    except rpolicy.PolicyError as exc:
        raise GroupError("invalid", "%(exc)s (empty or null: the group sets no limit; 0: its "
                                    "members have no limit)", exc=exc.text) from None


def create_group(s: Session, name: Any, description: Any = "",
                 max_running: Any = None) -> Group:
    name = check_name(name)
    limit = check_max_running(max_running)
    if not isinstance(description, str) or len(description) > 255:
        raise GroupError("invalid", "description: a string of at most 255 characters")
    if s.scalar(select(Group.id).where(Group.source == LOCAL, Group.name == name)) is not None:
        raise GroupError("conflict", "a group named %(name)s already exists", name=name)
    g = Group(name=name, source=LOCAL, description=description, max_running=limit)
    s.add(g)
    s.flush()
    return g


def set_max_running(s: Session, ref: int | str, value: Any) -> Group:
    """Set (or clear, with None) a group's running-machines limit; directory groups too
    (their members come from the directory, their limit from here)."""
    g = get_group(s, ref)
    g.max_running = check_max_running(value)
    s.flush()
    return g


def delete_group(s: Session, ref: int | str) -> None:
    s.delete(get_group(s, ref))


def _user(s: Session, ref: int | str) -> User:
    if isinstance(ref, int):
        u = s.get(User, ref) if 0 < ref < 2**31 else None
    else:
        u = s.scalar(select(User).where(User.name == ref))
    if u is None:
        raise GroupError("not_found", "no user %(ref)s", ref=repr(ref))
    return u


def set_member(s: Session, group_ref: int | str, user_ref: int | str, present: bool) -> Group:
    """Add a user to (or remove from) a local group; directory groups are read-only here."""
    g = get_group(s, group_ref)
    if g.source != LOCAL:
        raise GroupError("conflict", "%(name)s is a directory group: its members come from the "
                                     "directory", name=g.name)
    u = _user(s, user_ref)
    row = s.get(GroupMember, (g.id, u.id))
    if present and row is None:
        s.add(GroupMember(group_id=g.id, user_id=u.id))
    elif not present and row is not None:
        s.delete(row)
    s.flush()
    return g


def sync_directory_groups(s: Session, user_id: int, names: Iterable[str]) -> None:
    """Make the user's directory-group memberships exactly ``names`` (read at this login).

    Group rows are created for names seen the first time, so admins can put them on
    access lists.
    """
    wanted = {n.lower(): n for n in names if n and len(n) <= 128}
    rows = {g.name.lower(): g for g in s.scalars(select(Group).where(Group.source == DIRECTORY))}
    for key, name in wanted.items():
        if key not in rows:
            rows[key] = Group(name=name, source=DIRECTORY, description="")
            s.add(rows[key])
    s.flush()
    keep = {rows[k].id for k in wanted}
    current = set(s.scalars(
        select(GroupMember.group_id).join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id == user_id, Group.source == DIRECTORY)))
    if current - keep:
        s.execute(delete(GroupMember).where(GroupMember.user_id == user_id,
                                            GroupMember.group_id.in_(current - keep)))
    for gid in sorted(keep - current):
        s.add(GroupMember(group_id=gid, user_id=user_id))
    s.flush()


def list_groups(s: Session) -> list[dict[str, Any]]:
    """Every group with its members' names (directory groups: as read at their last login)."""
    groups = list(s.scalars(select(Group).order_by(Group.source, Group.name)))
    members: dict[int, list[str]] = {}
    for gid, uname in s.execute(select(GroupMember.group_id, User.name)
                                .join(User, User.id == GroupMember.user_id).order_by(User.name)):
        members.setdefault(gid, []).append(uname)
    return [group_json(g, members.get(g.id, [])) for g in groups]


def user_group_ids(s: Session, user_id: int) -> set[int]:
    """The groups a user is in (local ones, and directory ones as of their last login)."""
    return set(s.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user_id)))


def usable_bases(user_id: int, is_admin: bool) -> ColumnElement[bool]:
    """A WHERE clause on Machine: the bases this user may see and start (no query of its own:
    the access lists and memberships are subqueries of the caller's query)."""
    # "= true", not "IS true": MariaDB uses ix_machines_is_base_name only for the former
    cond = Machine.is_base == true()
    if is_admin:
        return cond
    restricted = select(BaseAccess.machine_id)
    allowed = (select(BaseAccess.machine_id)
               .join(GroupMember, GroupMember.group_id == BaseAccess.group_id)
               .where(GroupMember.user_id == user_id))
    return and_(cond, Machine.is_public == true(),
                or_(Machine.id.not_in(restricted), Machine.id.in_(allowed)))


def in_access_list(s: Session, user_id: int, base_id: int) -> bool:
    """True when the base has no access list or the user is in one of its groups."""
    listed = set(s.scalars(select(BaseAccess.group_id).where(BaseAccess.machine_id == base_id)))
    return not listed or bool(listed & user_group_ids(s, user_id))


def access_map(s: Session) -> dict[int, set[int]]:
    """base id -> ids of the groups on its access list (bases with a list only)."""
    out: dict[int, set[int]] = {}
    for mid, gid in s.execute(select(BaseAccess.machine_id, BaseAccess.group_id)):
        out.setdefault(mid, set()).add(gid)
    return out


def base_access(s: Session, base_id: int) -> list[dict[str, Any]]:
    rows = s.scalars(select(Group).join(BaseAccess, BaseAccess.group_id == Group.id)
                     .where(BaseAccess.machine_id == base_id).order_by(Group.name))
    return [{"id": g.id, "name": g.name, "source": g.source} for g in rows]


def set_base_access(s: Session, base_id: int, group_ids: list[int]) -> list[dict[str, Any]]:
    """Replace a base's access list ([] makes it public to everyone again)."""
    base = s.get(Machine, base_id) if 0 < base_id < 2**31 else None
    if base is None or not base.is_base:
        raise GroupError("not_found", "no base %(base_id)s", base_id=base_id)
    wanted = set(group_ids)
    found = set(s.scalars(select(Group.id).where(Group.id.in_(wanted or {0}))))
    if wanted - found:
        raise GroupError("invalid", "no group %(value)s", value=min(wanted - found))
    s.execute(delete(BaseAccess).where(BaseAccess.machine_id == base_id))
    for gid in sorted(wanted):
        s.add(BaseAccess(machine_id=base_id, group_id=gid))
    s.flush()
    return base_access(s, base_id)
