"""The ISO library on a deployed host (issue 15.2), from the controller through Apache.

An admin session uploads the host's iPXE image under a new name in chunks exactly as
large as Apache's LimitRequestBody; a chunk one byte larger gets 413. rvd_back (root,
in its sandbox) verifies the upload and copies it into root's ISO directory. A URL on
the host's loopback is downloaded by rvd_back in the background and checked against
its SHA-256. Both are deleted again (the host is left as it was).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from e2e import admin as admin_mod
from e2e import api as api_mod
from e2e.target import Target

ISO_DIR = "/var/lib/ravada/isos"
STAGING = "/var/lib/ravada/iso-staging"
UPLOADED = "e2e-upload.iso"
DOWNLOADED = "e2e-download.iso"
HTTP_PORT = 8765


@pytest.fixture(scope="module")
def target(host) -> Target:
    return Target.from_host(host)


@pytest.fixture(scope="module")
def admin(target) -> api_mod.Api:
    """An admin session (the ISO pages take a cookie + CSRF token, not a bearer token),
    with a second-factor code where the host requires one."""
    user, password = target.var("rvd_admin_user"), target.var("rvd_admin_password")
    code = None
    if admin_mod.needs_code(target):
        admin_mod.enrol(target, user, password)
        code = admin_mod.fresh_code(target)
    return api_mod.Api(target.ip).login(user, password, code=code)


@pytest.fixture(scope="module")
def ipxe(target) -> bytes:
    return target.host.file("/usr/lib/ipxe/ipxe.iso").content


def _chunk_limit(target: Target) -> int:
    return int(target.var("rvd_front_max_request_bytes", 1048576))


def _library(admin: api_mod.Api) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in admin.call("GET", "/admin/isos/data/").json()}


def _settled(admin: api_mod.Api, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        iso = _library(admin).get(name)
        if iso and iso["state"] in ("ready", "failed"):
            return iso
        assert time.monotonic() < deadline, f"{name}: still {iso and iso['state']}"
        time.sleep(1)


def _delete(admin: api_mod.Api, target: Target, name: str) -> None:
    iso = _library(admin).get(name)
    if iso and iso["id"]:
        admin.call("POST", f"/admin/isos/{iso['id']}/delete", ok=(200, 302),
                   allow_redirects=False)
        deadline = time.monotonic() + 60
        while name in _library(admin):
            assert time.monotonic() < deadline, f"{name} not removed"
            time.sleep(0.5)
    assert not target.host.file(f"{ISO_DIR}/{name}").exists


def test_upload_in_chunks_through_apache(target, admin, ipxe):
    _delete(admin, target, UPLOADED)  # a leftover of an earlier verify run
    chunk = _chunk_limit(target)
    start = admin.call("POST", "/admin/isos/data/uploads",
                       json={"name": UPLOADED, "size": len(ipxe)}).json()
    assert start["chunk_bytes"] == chunk
    too_big = admin.call("PUT", f"/admin/isos/data/uploads/{start['id']}?offset=0",
                         data=b"\0" * (chunk + 1), ok=(413,),
                         headers={"Content-Type": "application/octet-stream"})
    assert too_big.status_code == 413
    offset = 0
    while offset < len(ipxe):
        got = admin.call("PUT", f"/admin/isos/data/uploads/{start['id']}?offset={offset}",
                         data=ipxe[offset:offset + chunk],
                         headers={"Content-Type": "application/octet-stream"}).json()
        offset = got["received"]
    iso = _settled(admin, UPLOADED)
    assert iso["state"] == "ready", iso["error"]
    assert iso["sha256"] == hashlib.sha256(ipxe).hexdigest() and iso["kind"] == "iso9660"
    f = target.host.file(f"{ISO_DIR}/{UPLOADED}")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert target.host.run(f"ls -A {STAGING}").stdout.strip() == ""
    assert UPLOADED in admin.get("/isos")
    _delete(admin, target, UPLOADED)


def test_url_download_by_the_backend(target, admin, ipxe):
    _delete(admin, target, DOWNLOADED)
    target.run(f"systemd-run --unit=rvd-e2e-http --collect -p WorkingDirectory=/usr/lib/ipxe "
               f"python3 -m http.server {HTTP_PORT} --bind 127.0.0.1")
    try:
        time.sleep(1)
        resp = admin.call("POST", "/admin/isos/url", ok=(200, 302), allow_redirects=False,
                          data={"name": DOWNLOADED, "sha256": hashlib.sha256(ipxe).hexdigest(),
                                "url": f"http://127.0.0.1:{HTTP_PORT}/ipxe.iso",
                                "csrf_token": admin.csrf})
        assert resp.status_code == 302
        iso = _settled(admin, DOWNLOADED)
        assert iso["state"] == "ready", iso["error"]
        assert iso["size"] == len(ipxe)
        assert target.host.file(f"{ISO_DIR}/{DOWNLOADED}").content == ipxe
    finally:
        target.host.run("systemctl stop rvd-e2e-http")
    _delete(admin, target, DOWNLOADED)
