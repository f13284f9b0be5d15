# ruff: noqa: F811  (pytest fixtures imported from other test modules)
"""Per-group running limits: the backend on libvirt's test driver, and the whole path from
the admin's JSON API and page through rvd_front to the real rvd_back and back to the user."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from test_back import Running, make_config, start_daemon, stop_daemon
from test_classroom import _base, _clones, _user, back  # noqa: F401
from test_front_support import add_user, csrf_of, login

from ravada import policy as rp
from ravada.db import Database, Group, GroupMember, Machine, Setting
from ravada.front import create_app


def test_user_limit_rule() -> None:
    assert rp.user_limit(1, {}) == (1, "max_running_per_user")
    assert rp.user_limit(1, {"lab": 2, "staff": 1}) == (2, "max_running of group lab")
    assert rp.user_limit(3, {"b": 2, "a": 2}) == (2, "max_running of group a")
    assert rp.user_limit(1, {"lab": 2, "admins": 0}) == (0, "max_running of group admins")
    assert "limit is 2 (max_running of group lab)" in (
        rp.over_limit(2, 2, "max_running of group lab") or "")
    assert rp.check_limit("") is None and rp.check_limit(None) is None
    assert rp.check_limit("3") == 3 and rp.check_limit(0) == 0
    for bad in (-1, 1001, "x", True, 2.5):
        with pytest.raises(rp.PolicyError, match="max_running: an integer from 0 to 1000"):
            rp.check_limit(bad)


def _group(db: Database, user_id: int, max_running: int | None) -> int:
    with db.session() as s:
        g = Group(name="g" + uuid.uuid4().hex[:6], source="local", max_running=max_running)
        s.add(g)
        s.flush()
        s.add(GroupMember(group_id=g.id, user_id=user_id))
        return g.id


def _group_name(db: Database, gid: int) -> str:
    with db.sessionmaker() as s:
        g = s.get(Group, gid)
        assert g is not None
        return g.name


def test_group_limits_in_the_backend(back: Running) -> None:
    bases = [_base(back) for _ in range(3)]
    dave, erin = _user(back.db), _user(back.db)
    with back.db.session() as s:
        s.add(Setting(key="max_running_per_user", value=1))
    lab, staff = _group(back.db, dave, 2), _group(back.db, dave, 1)
    _group(back.db, erin, None)  # a group without a limit: the global one applies
    # dave: the most generous of his groups (lab's 2), above the global 1
    for base in bases[:2]:
        back.ok("clone", {"user_id": dave, "start": True}, machine_id=base)
    guests = back.guests()
    error = back.fails("clone", {"user_id": dave, "start": True}, machine_id=bases[2])
    assert error == ("you already have 2 machine(s) running and the limit is 2 (max_running "
                     f"of group {_group_name(back.db, lab)}): shut one down first")
    assert _clones(back, bases[2]) == [] and back.guests() == guests  # nothing was made
    # lab's limit cleared: staff's 1 is his now, and named
    with back.db.session() as s:
        s.execute(update(Group).where(Group.id == lab).values(max_running=None))
    error = back.fails("clone", {"user_id": dave, "start": True}, machine_id=bases[2])
    assert f"limit is 1 (max_running of group {_group_name(back.db, staff)})" in error
    # 0 on a group of his: no limit at all
    with back.db.session() as s:
        s.execute(update(Group).where(Group.id == staff).values(max_running=0))
    back.ok("clone", {"user_id": dave, "start": True}, machine_id=bases[2])
    # erin's group sets none: the global limit, named as such
    back.ok("clone", {"user_id": erin, "start": True}, machine_id=bases[0])
    error = back.fails("clone", {"user_id": erin, "start": True}, machine_id=bases[1])
    assert "limit is 1 (max_running_per_user)" in error


# -- through rvd_front -------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, sqlite_db: Database) -> Iterator[Running]:
    cfg = make_config(tmp_path, sqlite_db.url, workers=2)
    r = start_daemon(cfg, sqlite_db, tmp_path)
    yield r
    stop_daemon(r)


def test_group_limit_from_the_admin_to_the_users_click(site: Running) -> None:
    app = create_app(site.cfg, site.db)
    add_user(site.db, "admin", admin=True)
    frank = add_user(site.db, "frank")
    bases = [_base(site) for _ in range(2)]
    with site.db.session() as s:
        s.execute(update(Machine).where(Machine.id.in_(bases)).values(is_public=True))
        s.add(Setting(key="max_running_per_user", value=5))
    admin, user = app.test_client(), app.test_client()
    login(admin, "admin")
    login(user, "frank")
    h = {"X-CSRFToken": csrf_of(admin)}

    # JSON API: create with a limit, validated, changed with PATCH; members only for admins
    r = admin.post("/api/v1/groups", json={"name": "class1", "max_running": "x"}, headers=h)
    assert r.status_code == 422 and "max_running: an integer from 0 to 1000" in r.json["detail"]
    r = admin.post("/api/v1/groups", json={"name": "class1", "max_running": 3}, headers=h)
    assert r.status_code == 201 and r.json["max_running"] == 3
    gid = r.json["id"]
    assert admin.put(f"/api/v1/groups/{gid}/members/{frank}", headers=h).status_code == 200
    for body, code, detail in [({"max_running": -1}, 422, "an integer from 0 to 1000"),
                               ({"max_running": 1, "colour": 1}, 400, "unknown group field"),
                               ({}, 400, "unknown group field")]:
        r = admin.patch(f"/api/v1/groups/{gid}", json=body, headers=h)
        assert r.status_code == code and detail in r.json["detail"], r.json
    assert admin.patch("/api/v1/groups/999999", json={"max_running": 1},
                       headers=h).status_code == 404
    r = user.patch(f"/api/v1/groups/{gid}", json={"max_running": 9},
                   headers={"X-CSRFToken": csrf_of(user)})
    assert r.status_code == 403
    r = admin.patch(f"/api/v1/groups/{gid}", json={"max_running": None}, headers=h)
    assert r.status_code == 200 and r.json["max_running"] is None
    assert admin.get("/api/v1/groups").json[0]["max_running"] is None

    # the admin page: the limit in the group's row, set from its form
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert 'name="max_running"' in page
    r = admin.post(f"/admin/groups/{gid}", data={"csrf_token": csrf_of(admin), "op": "limit",
                                                 "max_running": "1"})
    assert r.status_code == 302
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert "Running limit of class1: 1." in page and 'value="1"' in page
    r = admin.post(f"/admin/groups/{gid}", data={"csrf_token": csrf_of(admin), "op": "limit",
                                                 "max_running": "lots"})
    assert "max_running: an integer from 0 to 1000" in \
        admin.get(r.headers["Location"]).get_data(as_text=True)

    # frank's clicks: the first starts; the second is refused by rvd_back, naming the group
    uh = {"X-CSRFToken": csrf_of(user)}
    r = user.post(f"/api/v1/bases/{bases[0]}/start?wait=20", headers=uh)
    assert r.status_code in (200, 201, 202), r.json
    first = _wait_request(user, r.json)
    assert first["status"] == "done", first
    r = user.post(f"/api/v1/bases/{bases[1]}/start?wait=20", headers=uh)
    second = _wait_request(user, r.json)
    assert second["status"] == "failed"
    assert second["error"] == ("you already have 1 machine(s) running and the limit is 1 "
                               "(max_running of group class1): shut one down first")
    assert _clones(site, bases[1]) == []  # nothing was made


def _wait_request(client, started: dict) -> dict:  # type: ignore[no-untyped-def]
    rid = started.get("request_id") or started.get("id")
    r = client.get(f"/api/v1/requests/{rid}?wait=20")
    assert r.status_code == 200, r.json
    return r.json
