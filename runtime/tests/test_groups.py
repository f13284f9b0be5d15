# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Local groups (CLI, admin pages, API) and base access lists: page, API and start agree."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from test_front_support import World, csrf_of, world, world_both  # noqa: F401

from ravada.auth import groups

RVD_BACK = str(Path(sys.executable).with_name("rvd_back"))


def api(c: Any, method: str, path: str, body: Any = None) -> Any:
    return getattr(c, method)("/api/v1" + path, json=body, headers={"X-CSRFToken": csrf_of(c)})


def test_cli_groups(tmp_path: Path, world: World) -> None:
    import subprocess

    conf = tmp_path / "cli.yml"
    conf.write_text(yaml.safe_dump({"database": {"url": world.db.url},
                                    "queue": {"socket": str(tmp_path / "q.sock")}}))

    def rvd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RVD_BACK, "--config", str(conf), *args], capture_output=True,
                              text=True, timeout=60)

    assert rvd("--add-group", "physics").stdout == "created group physics\n"
    r = rvd("--add-group", "physics")
    assert (r.returncode, r.stderr) == (1, "rvd_back: a group named physics already exists\n")
    assert rvd("--add-group", "bad name").returncode == 1
    assert rvd("--add-to-group", "physics", "alice").stdout == "alice added to physics\n"
    r = rvd("--add-to-group", "physics", "nobody")
    assert (r.returncode, r.stderr) == (1, "rvd_back: no user 'nobody'\n")
    r = rvd("--add-to-group", "chemistry", "alice")
    assert (r.returncode, r.stderr) == (1, "rvd_back: no group 'chemistry'\n")
    r = rvd("--list-groups")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1].split() == ["physics", "local", "alice"]
    assert rvd("--remove-from-group", "physics", "alice").returncode == 0
    assert rvd("--list-groups").stdout.splitlines()[1].split() == ["physics", "local", "-"]


def test_groups_api_is_for_admins_and_checks_input(world_both: World) -> None:
    w = world_both
    admin, alice = w.client("admin"), w.client("alice")
    assert api(alice, "get", "/groups").status_code == 403
    assert api(alice, "post", "/groups", {"name": "x"}).status_code == 403
    resp = api(admin, "post", "/groups", {"name": "lab", "description": "Lab 1"})
    assert resp.status_code == 201
    gid = resp.json["id"]
    assert api(admin, "post", "/groups", {"name": "lab"}).status_code == 409
    assert api(admin, "post", "/groups", {"name": "a b"}).status_code == 422
    assert api(admin, "post", "/groups", {"name": ["x"]}).status_code == 422
    assert api(admin, "put", f"/groups/{gid}/members/999999").status_code == 404
    resp = api(admin, "put", f"/groups/{gid}/members/{w.alice}")
    assert resp.status_code == 200 and resp.json["members"] == ["alice"]
    assert api(admin, "get", "/groups").json[0]["members"] == ["alice"]
    assert api(admin, "put", f"/bases/{w.base}/access", {"groups": [999]}).status_code == 422
    assert api(admin, "put", f"/bases/{w.base}/access", {"groups": "lab"}).status_code == 400
    assert api(admin, "put", f"/bases/{w.alice_vm}/access", {"groups": []}).status_code == 404
    assert api(alice, "put", f"/bases/{w.base}/access", {"groups": []}).status_code == 403
    assert api(admin, "delete", f"/groups/{gid}").status_code == 204
    assert api(admin, "get", "/groups").json == []


def test_local_group_access_list_page_api_and_forged_start_agree(world_both: World) -> None:
    w = world_both
    admin, alice, bob = w.client("admin"), w.client("alice"), w.client("bob")
    gid = api(admin, "post", "/groups", {"name": "lab"}).json["id"]
    api(admin, "put", f"/groups/{gid}/members/{w.bob}")
    # edited on the base's admin machine page
    page = admin.get(f"/admin/machines/{w.base}").get_data(as_text=True)
    assert f'action="/admin/bases/{w.base}/access"' in page
    resp = admin.post(f"/admin/bases/{w.base}/access",
                      data={"groups": [str(gid)], "csrf_token": csrf_of(admin), "next": "machine"})
    assert resp.status_code == 302 and resp.location.endswith(f"/admin/machines/{w.base}")
    page = admin.get(f"/admin/machines/{w.base}").get_data(as_text=True)
    assert f'<option value="{gid}" selected>lab</option>' in page

    assert [b["name"] for b in api(bob, "get", "/bases").json] == ["desk"]
    assert api(alice, "get", "/bases").json == []
    assert f'data-base="{w.base}"' in bob.get("/").get_data(as_text=True)
    assert f'data-base="{w.base}"' not in alice.get("/").get_data(as_text=True)
    assert api(alice, "post", f"/bases/{w.base}/start").status_code == 404
    assert api(alice, "post", f"/bases/{w.private_base}/start").status_code == 404
    assert api(bob, "post", f"/bases/{w.base}/start").status_code in (200, 202)
    # alice's clone made before the list existed cannot be started either
    api(admin, "post", f"/machines/{w.alice_vm}/force_shutdown?wait=5")
    assert api(alice, "post", f"/machines/{w.alice_vm}/start").status_code == 403
    # an empty list makes the base everyone's again
    assert api(admin, "put", f"/bases/{w.base}/access", {"groups": []}).json == {"groups": []}
    assert [b["name"] for b in api(alice, "get", "/bases").json] == ["desk"]


def test_groups_page_shows_members(world: World) -> None:
    admin = world.client("admin")
    with world.db.session() as s:
        g = groups.create_group(s, "teachers")
        groups.set_member(s, g.id, "bob", True)
        groups.sync_directory_groups(s, world.bob, ["Domain Users"])
    resp = admin.post(f"/admin/groups/{g.id}", data={"op": "add", "user": "alice",
                                                     "csrf_token": csrf_of(admin)})
    assert resp.status_code == 302
    page = admin.get("/admin/groups").get_data(as_text=True)
    row = page[page.index(f'data-group="{g.id}"'):]
    row = row[:row.index("</tr>")]
    assert "alice" in row and "bob" in row
    row = page[page.index("Domain Users"):]
    assert "directory" in row[:row.index("</tr>")] and "bob" in row[:row.index("</tr>")]
    assert world.client("alice").get("/admin/groups").status_code == 403
