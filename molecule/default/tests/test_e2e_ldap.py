"""Directory login end to end (issue 12): through Apache, against the host's test slapd.

prepare_ldap.yml runs Debian's slapd in each molecule host (StartTLS, test CA); the
inventory points the rvd role at it (rvd_ldap_*). From the controller, over HTTPS:
a directory user logs in (their row is created, backend ldap), the admin gives a base
to the user's directory group, the user sees it and starts a KVM desktop from it; a
directory user outside the group neither sees nor can start it (forged POST: 404);
a member of the admin group is an administrator. One small base (iPXE ISO, 256 MB),
removed at the end.
"""

from __future__ import annotations

import pytest
from e2e import admin as admin_mod
from e2e import api as api_mod

BASE_NAME = "ldap-base"
GROUP = "vdi-students"
ISO = "ipxe.iso"
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _login(host_ip: str, name: str, password: str) -> api_mod.Api:
    return api_mod.Api(host_ip).login(name, password)


def _by_name(items, name):  # type: ignore[no-untyped-def]
    return next((m for m in items if m["name"] == name), None)


def test_directory_user_starts_a_desktop_of_a_base_given_to_their_group(host):
    from e2e.target import Target

    target = Target.from_host(host)
    users = target.var("ravada_e2e_ldap_users")
    assert users, "the inventory lacks ravada_e2e_ldap_users (molecule.yml)"
    admin = admin_mod.admin_api(target)

    # a wrong directory password is refused, the right one creates the row
    bad = api_mod.Api(target.ip).call("POST", api_mod.PREFIX + "/session", ok=(401,),
                                      json={"name": "molly", "password": "not-mollys"})
    assert bad.json()["error"] == "unauthorized"
    molly = _login(target.ip, "molly", users["molly"])
    nina = _login(target.ip, "nina", users["nina"])
    rows = {u["name"]: u for u in admin.get("/users")}
    assert rows["molly"]["auth_backend"] == "ldap" and rows["molly"]["directory_groups"] == [GROUP]
    assert rows["nina"]["directory_groups"] == []

    # the admin group: mona is an administrator by directory membership
    mona = _login(target.ip, "mona", users["mona"])
    assert mona.get("/session")["user"]["is_admin"] is True

    # a small base, given to the directory group
    base = _by_name(admin.machines(), BASE_NAME)
    if base is None:
        admin.done(admin.create_machine(name=BASE_NAME, iso=ISO, memory_mb=256, vcpus=1,
                                        disk_gb=1))
        base = _by_name(admin.machines(), BASE_NAME)
    assert base is not None
    if not base["is_base"]:
        admin.done(admin.action(base["id"], "prepare_base"))
    admin.set_public(base["id"], True)
    group = _by_name(admin.get("/groups"), GROUP)
    assert group is not None and group["source"] == "ldap" and group["members"] == ["molly"]
    access = admin.call("PUT", f"{api_mod.PREFIX}/bases/{base['id']}/access",
                        json={"groups": [group["id"]]}).json()
    assert [g["name"] for g in access["groups"]] == [GROUP]

    # nina: not listed, a forged start is a 404
    assert _by_name(nina.bases(), BASE_NAME) is None
    forged = nina.call("POST", f"{api_mod.PREFIX}/bases/{base['id']}/start", ok=(404,))
    assert forged.json()["error"] == "not_found"

    # molly: listed, and her click gives a running KVM guest
    assert _by_name(molly.bases(), BASE_NAME) is not None
    started = molly.start_base(base["id"])
    req = molly.done(started["request_id"], timeout=300)
    clone_id = started["machine_id"] or req.get("result", {}).get("machine_id")
    assert clone_id, req
    clone = molly.machine(clone_id)
    assert clone["state"] == "running" and clone["owner_id"] == rows["molly"]["id"], clone
    state = target.run("virsh -q domstate %s", clone["name"]).stdout.strip()
    assert state == "running", state

    # leave nothing behind for the tests after this one
    admin.done(admin.action(clone_id, "force_shutdown"))
    admin.done(admin.action(clone_id, "remove"))
    admin.done(admin.action(base["id"], "remove_base"))
    admin.done(admin.action(base["id"], "remove"))
