# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""LDAP logins against a real slapd (Debian's package): backends, TLS, groups, access lists.

One slapd per module (test CA, StartTLS and ldaps, users in groupOfNames and
posixGroup groups, an admin group, memberOf overlay). Nothing is mocked: the
front's login goes through ravada.auth to the server.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from directory import GROUPS, SERVICE_DN, SERVICE_PW, USERS, Slapd, free_port
from sqlalchemy import select
from strict import unavailable
from test_front_support import StubBackend, add_machine, add_user, csrf_of

from ravada import config as rconfig
from ravada.auth import groups
from ravada.auth.base import DirectoryUnavailable
from ravada.auth.directory import LdapAuth
from ravada.auth.settings import AuthConfig, LdapConfig, check
from ravada.db import Database, User
from ravada.front import create_app
from ravada.front.accounts import BAD_LOGIN

pytestmark = pytest.mark.ldap


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if not Path("/usr/sbin/slapd").exists():
        unavailable("Debian's slapd is not installed (apt-get install slapd ldap-utils)")
    server = Slapd(tmp_path_factory.mktemp("slapd")).start()
    yield server
    server.stop()


def ldap_conf(slapd: Slapd, **kw: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "uris": [slapd.ldap_uri], "start_tls": True, "ca_file": str(slapd.ca_file),
        "bind_dn": SERVICE_DN, "bind_password": SERVICE_PW, "preset": "openldap",
        "user_base": USERS, "group_base": GROUPS, "group_membership": "member",
        "admin_group": "rvdadmins", "connect_timeout": 2, "timeout": 3,
    }
    conf.update(kw)
    return conf


def backend(slapd: Slapd, **kw: Any) -> LdapAuth:
    auth = AuthConfig(order=["ldap"], ldap=LdapConfig(**ldap_conf(slapd, **kw)))
    check(auth)
    return LdapAuth(auth.ldap)


def pw(slapd: Slapd, uid: str) -> str:
    return slapd.people[uid][0]


def closed_uri() -> str:
    return f"ldap://127.0.0.1:{free_port()}"


# ------------------------------------------------------------------ the backend alone

def test_directory_login_reads_name_and_groups(slapd: Slapd) -> None:
    b = backend(slapd)
    ident = b.authenticate(None, "alice", pw(slapd, "alice"))  # type: ignore[arg-type]
    assert ident is not None and ident.backend == "ldap" and ident.name == "alice"
    assert ident.groups == ("students",) and ident.is_admin is False
    # LDAP matches uid case-insensitively: the row name comes from the entry, not the input
    assert b.authenticate(None, "ALICE", pw(slapd, "alice")).name == "alice"  # type: ignore


@pytest.mark.parametrize("style, expected", [
    ("memberUid", ("labusers",)),   # posixGroup
    ("memberOf", ("students",)),    # the memberof overlay on groupOfNames
])
def test_group_membership_styles(slapd: Slapd, style: str, expected: tuple[str, ...]) -> None:
    b = backend(slapd, group_membership=style, admin_group="")
    ident = b.authenticate(None, "alice", pw(slapd, "alice"))  # type: ignore[arg-type]
    assert ident is not None and ident.groups == expected and ident.is_admin is None


@pytest.mark.parametrize("name, password", [
    ("alice", "not-alices-password"),        # wrong password
    ("nobody", "whatever-pw-1"),             # unknown user
    ("*", "alice-dir-pw-1"),                 # wildcard as a name
    ("*)(uid=*", "alice-dir-pw-1"),          # filter injection
    ("alice)(|(uid=*", "alice-dir-pw-1"),
    ("*)(|(objectClass=*", "bob-dir-pw-22"),
    ("alice\x00", "alice-dir-pw-1"),
])
def test_refused_logins(slapd: Slapd, name: str, password: str) -> None:
    assert backend(slapd).authenticate(None, name, password) is None  # type: ignore[arg-type]


BIND = r" BIND dn=.* method="  # slapd's stats log: one such line per bind


def _binds(slapd: Slapd) -> int:
    return len(re.findall(r" BIND dn=.* method=", slapd.log()))


def _wait_log(slapd: Slapd, pattern: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(re.findall(pattern, slapd.log())) < count:
        assert time.monotonic() < deadline, f"slapd log has no {pattern!r} x{count}"
        time.sleep(0.02)


def test_empty_password_is_refused_before_any_bind(slapd: Slapd) -> None:
    b = backend(slapd)
    assert b.authenticate(None, "alice", pw(slapd, "alice")) is not None  # type: ignore
    _wait_log(slapd, r'BIND dn="uid=alice', 1)
    before = _binds(slapd)
    assert b.authenticate(None, "alice", "") is None  # type: ignore[arg-type]
    time.sleep(0.2)
    assert _binds(slapd) == before


def test_one_search_one_bind_per_login_on_reused_connections(slapd: Slapd) -> None:
    b = backend(slapd, group_membership="memberOf", admin_group="")
    b.authenticate(None, "bob", pw(slapd, "bob"))  # type: ignore[arg-type]
    time.sleep(0.2)
    log = slapd.log()
    conns, searches, binds = (len(re.findall(p, log)) for p in
                              (r" ACCEPT from", r" SRCH base=", BIND))
    for _ in range(3):
        assert b.authenticate(None, "bob", pw(slapd, "bob")) is not None  # type: ignore
    _wait_log(slapd, BIND, binds + 3)
    time.sleep(0.2)
    log = slapd.log()
    assert len(re.findall(r" ACCEPT from", log)) == conns  # no new connection
    assert len(re.findall(r" SRCH base=", log)) == searches + 3
    assert len(re.findall(BIND, log)) == binds + 3


def test_fail_over_to_the_second_uri(slapd: Slapd) -> None:
    b = backend(slapd, uris=[closed_uri(), slapd.ldap_uri])
    assert b.authenticate(None, "alice", pw(slapd, "alice")) is not None  # type: ignore


def test_ldaps_with_the_right_ca(slapd: Slapd) -> None:
    b = backend(slapd, uris=[slapd.ldaps_uri], start_tls=False)
    assert b.authenticate(None, "bob", pw(slapd, "bob")) is not None  # type: ignore


@pytest.mark.parametrize("kind", ["rogue_ca_ldaps", "rogue_ca_starttls", "wrong_name"])
def test_certificate_that_does_not_match_is_refused(slapd: Slapd, kind: str) -> None:
    kw: dict[str, Any] = {
        "rogue_ca_ldaps": {"uris": [slapd.ldaps_uri], "start_tls": False,
                           "ca_file": str(slapd.rogue_ca_file)},
        "rogue_ca_starttls": {"ca_file": str(slapd.rogue_ca_file)},
        "wrong_name": {"uris": [slapd.mismatched_uri], "start_tls": False},
    }[kind]
    with pytest.raises(DirectoryUnavailable):
        backend(slapd, **kw).authenticate(None, "alice", pw(slapd, "alice"))  # type: ignore


def test_turning_verification_off_logs_a_warning(slapd: Slapd,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "ravada.auth.ldap"):
        b = backend(slapd, tls_verify=False, ca_file="", uris=[slapd.mismatched_uri],
                    start_tls=False)
    assert "NOT checked" in caplog.text
    assert b.authenticate(None, "alice", pw(slapd, "alice")) is not None  # type: ignore


def test_directory_down_then_back(slapd: Slapd) -> None:
    b = backend(slapd, uris=[closed_uri()], retry_after=0)
    with pytest.raises(DirectoryUnavailable):
        b.authenticate(None, "alice", pw(slapd, "alice"))  # type: ignore[arg-type]


# ------------------------------------------------------------------ config checks

@pytest.mark.parametrize("change, key", [
    ({"uris": []}, "auth.ldap.uris"),
    ({"uris": ["http://x"]}, "auth.ldap.uris[0]"),
    ({"start_tls": False}, "auth.ldap.start_tls"),  # ldap:// in clear
    ({"uris": ["ldaps://x"]}, "auth.ldap.start_tls"),  # StartTLS on ldaps
    ({"ca_file": ""}, "auth.ldap.ca_file"),
    ({"ca_file": "/nonexistent/ca.pem"}, "auth.ldap.ca_file"),
    ({"bind_password": ""}, "auth.ldap.bind_password"),
    ({"preset": "", "user_filter": "(uid=alice)"}, "auth.ldap.user_filter"),
    ({"preset": "novell"}, "auth.ldap.preset"),
    ({"group_membership": "owner"}, "auth.ldap.group_membership"),
    ({"group_base": ""}, "auth.ldap.group_base"),
    ({"group_membership": ""}, "auth.ldap.admin_group"),
    ({"timeout": 0}, "auth.ldap.timeout"),
    ({"user_base": ""}, "auth.ldap.user_base"),
])
def test_config_errors_name_the_key(slapd: Slapd, tmp_path: Path, change: dict[str, Any],
                                    key: str) -> None:
    with pytest.raises(rconfig.ConfigError) as err:
        rconfig.from_dict({"queue": {"socket": str(tmp_path / "q.sock")},
                           "auth": {"order": ["local", "ldap"],
                                    "ldap": ldap_conf(slapd, **change)}})
    assert str(err.value).startswith(key + ":"), str(err.value)


def test_config_order_is_checked(tmp_path: Path) -> None:
    queue = {"socket": str(tmp_path / "q.sock")}
    with pytest.raises(rconfig.ConfigError, match=r"^auth.order\[1\]: unknown backend"):
        rconfig.from_dict({"queue": queue, "auth": {"order": ["local", "kerberos"]}})
    with pytest.raises(rconfig.ConfigError, match="^auth.ldap.uris:"):
        rconfig.from_dict({"queue": queue, "auth": {"order": ["ldap"]}})
    assert rconfig.from_dict({"queue": queue}).auth.order == ["local"]


# ------------------------------------------------------------------ through the front

class Front:
    """The front with ``auth.order`` and ``auth.ldap`` settings, the stub backend and an admin."""

    def __init__(self, tmp_path: Path, db: Database, ldap: dict[str, Any],
                 order: list[str]) -> None:
        iso_dir = tmp_path / "isos"
        iso_dir.mkdir(exist_ok=True)
        self.db = db
        self.config = rconfig.from_dict({
            "database": {"url": db.url}, "libvirt": {"uri": "test:///default"},
            "queue": {"socket": str(tmp_path / "queue.sock")}, "firewall": {"enabled": False},
            "front": {"secret_key_file": str(tmp_path / "front.key"), "iso_dir": str(iso_dir)},
            "auth": {"order": order, "ldap": ldap},
        })
        self.app = create_app(self.config, db)
        self.app.config["TESTING"] = True
        self.backend = StubBackend(db, self.config, tmp_path / "shots").start()
        self.admin = add_user(db, "admin", admin=True)

    def login(self, name: str, password: str) -> tuple[Any, Any]:
        c = self.app.test_client()
        c.get("/login")
        resp = c.post("/login", data={"name": name, "password": password,
                                      "csrf_token": csrf_of(c)})
        return c, resp

    def user(self, name: str) -> User | None:
        with self.db.sessionmaker() as s:
            return s.scalar(select(User).where(User.name == name))


@pytest.fixture
def front(tmp_path: Path, sqlite_db: Database, slapd: Slapd) -> Iterator[Front]:
    f = Front(tmp_path, sqlite_db, ldap_conf(slapd), ["local", "ldap"])
    yield f
    f.backend.stop()


def test_first_directory_login_creates_the_row_without_the_password(
        front: Front, slapd: Slapd, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = pw(slapd, "alice")
    with caplog.at_level(logging.DEBUG):
        c, resp = front.login("alice", secret)
    assert resp.status_code == 302
    u = front.user("alice")
    assert u is not None and u.auth_backend == "ldap" and u.password_hash == ""
    assert u.directory_groups == ["students"] and u.groups_read_at is not None
    assert not u.is_admin
    front.db.dispose()
    assert secret.encode() not in (tmp_path / "ravada.db").read_bytes()
    assert secret not in caplog.text
    # directory users cannot set a local password, nor have one set for them
    resp = c.post("/api/v1/password", json={"password": secret, "new_password": "x" * 12},
                  headers={"X-CSRFToken": csrf_of(c)})
    assert resp.status_code == 409 and "directory" in resp.json["detail"]


def test_wrong_unknown_empty_and_injected_logins_through_the_page(front: Front,
                                                                   slapd: Slapd) -> None:
    for name, password in (("alice", "wrong-password"), ("nobody", "x" * 10),
                           ("*)(uid=*", pw(slapd, "alice")), ("*", pw(slapd, "bob"))):
        _, resp = front.login(name, password)
        assert resp.status_code == 401 and BAD_LOGIN in resp.get_data(as_text=True)
    _, resp = front.login("alice", "")
    assert resp.status_code in (400, 401)
    with front.db.sessionmaker() as s:
        assert s.scalars(select(User.name)).all() == ["admin"]


def test_directory_down_local_admin_still_logs_in(tmp_path: Path, sqlite_db: Database,
                                                  slapd: Slapd) -> None:
    f = Front(tmp_path, sqlite_db, ldap_conf(slapd, uris=[closed_uri()]), ["ldap", "local"])
    try:
        _, resp = f.login("admin", "correct horse battery")
        assert resp.status_code == 302
        _, resp = f.login("alice", pw(slapd, "alice"))
        assert resp.status_code == 503
        assert "directory is unreachable" in resp.get_data(as_text=True)
        _, resp = f.login("admin", "wrong password!")  # a local name: just a wrong password
        assert resp.status_code == 401
        c = f.app.test_client()
        resp = c.post("/api/v1/session", json={"name": "alice", "password": pw(slapd, "alice")})
        assert resp.status_code == 503 and resp.json["reason"] == "directory_unreachable"
    finally:
        f.backend.stop()


def test_directory_cannot_take_over_a_local_account(front: Front, slapd: Slapd) -> None:
    add_user(front.db, "bob", password="bobs-local-password")
    _, resp = front.login("bob", pw(slapd, "bob"))
    assert resp.status_code == 401
    _, resp = front.login("bob", "bobs-local-password")
    assert resp.status_code == 302
    assert front.user("bob").auth_backend == "local"  # type: ignore[union-attr]


def test_admin_group_gives_and_takes_the_admin_flag(front: Front, slapd: Slapd) -> None:
    c, resp = front.login("carol", pw(slapd, "carol"))
    assert resp.status_code == 302 and front.user("carol").is_admin  # type: ignore[union-attr]
    assert c.get("/admin/users").status_code == 200
    slapd.set_member("rvdadmins", "carol", False)
    try:
        c, resp = front.login("carol", pw(slapd, "carol"))
        assert resp.status_code == 302
        assert not front.user("carol").is_admin  # type: ignore[union-attr]
        assert c.get("/admin/users").status_code == 403
        # the membership itself was re-read: carol is no longer in the directory group
        assert front.user("carol").directory_groups == []  # type: ignore[union-attr]
        with front.db.sessionmaker() as s:
            rows = {g["name"]: g for g in groups.list_groups(s)}
        assert rows["rvdadmins"]["source"] == "ldap" and rows["rvdadmins"]["members"] == []
    finally:
        slapd.set_member("rvdadmins", "carol", True)


def test_bases_given_to_a_directory_group(front: Front, slapd: Slapd) -> None:
    shared = add_machine(front.db, "lab-desk", front.admin, is_base=True, is_public=True)
    everyone = add_machine(front.db, "open-desk", front.admin, is_base=True, is_public=True)
    alice, _ = front.login("alice", pw(slapd, "alice"))  # creates the "students" group row
    bob, _ = front.login("bob", pw(slapd, "bob"))
    with front.db.session() as s:
        students = groups.get_group(s, "students").id
    admin, _ = front.login("admin", "correct horse battery")
    resp = admin.put(f"/api/v1/bases/{shared}/access", json={"groups": [students]},
                     headers={"X-CSRFToken": csrf_of(admin)})
    assert resp.status_code == 200, resp.json
    assert [g["name"] for g in resp.json["groups"]] == ["students"]

    def listed(c: Any) -> set[str]:
        return {b["name"] for b in c.get("/api/v1/bases").json}

    assert listed(alice) == {"lab-desk", "open-desk"}
    assert listed(bob) == {"open-desk"}
    assert "lab-desk" in alice.get("/").get_data(as_text=True)
    assert "lab-desk" not in bob.get("/").get_data(as_text=True)
    token = {"X-CSRFToken": csrf_of(bob)}
    assert bob.post(f"/api/v1/bases/{shared}/start", headers=token).status_code == 404
    assert bob.post(f"/api/v1/bases/{everyone}/start", headers=token).status_code in (200, 202)
    resp = alice.post(f"/api/v1/bases/{shared}/start?wait=5",
                      headers={"X-CSRFToken": csrf_of(alice)})
    assert resp.status_code == 200, resp.json
    assert resp.json["request"]["command"] == "clone"
