"""Active Directory logins against a real Samba AD DC: sAMAccountName and UPN, nested groups
through LDAP_MATCHING_RULE_IN_CHAIN, the admin group, and a base given to a nested group.

Runs wherever Debian's samba is installed and the tests run as root (CI does both);
elsewhere the module is skipped with the exact reason (a failure in strict mode, as in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samba_ad import BASE_DN, SambaAD, samba_missing
from strict import unavailable
from test_auth_ldap import Front
from test_front_support import add_machine, csrf_of

from ravada.auth.directory import LdapAuth
from ravada.auth.settings import AuthConfig, LdapConfig, check
from ravada.db import Database

pytestmark = pytest.mark.samba


@pytest.fixture(scope="module")
def ad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaAD]:
    reason = samba_missing()
    if reason:
        unavailable(reason)
    server = SambaAD(tmp_path_factory.mktemp("samba"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def ad_conf(ad: SambaAD) -> dict[str, Any]:
    return {"uris": [ad.uri], "ca_file": str(ad.ca_file), "preset": "ad",
            "bind_dn": f"Administrator@{BASE_DN.replace('DC=', '').replace(',', '.')}",
            "bind_password": "Adm1n-Pass-word!", "user_base": BASE_DN, "group_base": BASE_DN,
            "group_membership": "ad_nested", "admin_group": "VDI Admins"}


def backend(ad: SambaAD) -> LdapAuth:
    auth = AuthConfig(order=["ldap"], ldap=LdapConfig(**ad_conf(ad)))
    check(auth)
    return LdapAuth(auth.ldap)


def test_ad_login_by_sam_account_name_and_upn_with_nested_groups(ad: SambaAD) -> None:
    b = backend(ad)
    pw = ad.people["adalice"][0]
    for typed in ("adalice", "adalice@example.org", "ADAlice"):
        ident = b.authenticate(None, typed, pw)  # type: ignore[arg-type]
        assert ident is not None and ident.name == "adalice", typed
        assert ident.groups == ("lab-a", "vdi-users")  # vdi-users only through lab-a
        assert ident.is_admin is False
    carol = b.authenticate(None, "adcarol", ad.people["adcarol"][0])  # type: ignore[arg-type]
    assert carol is not None and carol.is_admin is True


@pytest.mark.parametrize("name, password", [
    ("adalice", "wrong-Passw0rd!"), ("nobody", "Whatever-1!"), ("adalice", ""),
    ("*", "Al1ce-Dir-Pw!"), ("*)(sAMAccountName=*", "Al1ce-Dir-Pw!"),
])
def test_ad_refused_logins(ad: SambaAD, name: str, password: str) -> None:
    assert backend(ad).authenticate(None, name, password) is None  # type: ignore[arg-type]


def test_base_given_to_a_nested_ad_group(ad: SambaAD, tmp_path: Path,
                                         sqlite_db: Database) -> None:
    f = Front(tmp_path, sqlite_db, ad_conf(ad), ["local", "ldap"])
    try:
        base = add_machine(f.db, "ad-desk", f.admin, is_base=True, is_public=True)
        alice, resp = f.login("adalice@example.org", ad.people["adalice"][0])
        assert resp.status_code == 302
        bob, resp = f.login("adbob", ad.people["adbob"][0])
        assert resp.status_code == 302
        admin, _ = f.login("admin", "correct horse battery")
        groups = admin.get("/api/v1/groups").json
        vdi = next(g for g in groups if g["name"] == "vdi-users")
        assert vdi["source"] == "ldap" and vdi["members"] == ["adalice"]
        resp = admin.put(f"/api/v1/bases/{base}/access", json={"groups": [vdi["id"]]},
                         headers={"X-CSRFToken": csrf_of(admin)})
        assert resp.status_code == 200
        assert [b["name"] for b in alice.get("/api/v1/bases").json] == ["ad-desk"]
        assert bob.get("/api/v1/bases").json == []
        assert bob.post(f"/api/v1/bases/{base}/start",
                        headers={"X-CSRFToken": csrf_of(bob)}).status_code == 404
        assert alice.post(f"/api/v1/bases/{base}/start",
                          headers={"X-CSRFToken": csrf_of(alice)}).status_code in (200, 202)
        _, resp = f.login("adcarol", ad.people["adcarol"][0])
        assert resp.status_code == 302 and f.user("adcarol").is_admin  # type: ignore[union-attr]
    finally:
        f.backend.stop()
