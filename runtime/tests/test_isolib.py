"""The ISO library through the front and the real rvd_back (test:///default): chunked
uploads, URL downloads from a server on loopback, checks, delete while used (issue 15.2).

The images are real: ``xorriso`` makes a small ISO 9660 image per session.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_back import Running, start_daemon, stop_daemon
from test_front_support import add_machine, add_user, csrf_of, login

from ravada import config as rconfig
from ravada import isofmt
from ravada.db import Database, Iso
from ravada.front import create_app

CHUNK = 64 * 1024


@pytest.fixture(scope="session")
def iso_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real ISO 9660 image of ~700 KiB (11 chunks of 64 KiB)."""
    d = tmp_path_factory.mktemp("isosrc")
    (d / "src").mkdir()
    (d / "src" / "readme.txt").write_text("ravada test image\n")
    (d / "src" / "payload.bin").write_bytes(os.urandom(600 * 1024))
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "RVDTEST",
                    "-o", str(d / "test.iso"), str(d / "src")], check=True,
                   capture_output=True)
    return (d / "test.iso").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Lib:
    """rvd_back in a thread and the front app on the same database, as an admin."""

    def __init__(self, tmp_path: Path, db: Database) -> None:
        for sub in ("isos", "staging"):
            (tmp_path / sub).mkdir(exist_ok=True)
        self.iso_dir, self.staging = tmp_path / "isos", tmp_path / "staging"
        self.cfg = rconfig.from_dict({
            "database": {"url": db.url},
            "libvirt": {"uri": "test:///default", "storage_pool": "default-pool"},
            "queue": {"socket": str(tmp_path / "queue.sock"), "fallback_poll": 0.5},
            "display": {"listen": "127.0.0.1"},
            "firewall": {"enabled": False},
            "front": {"secret_key_file": str(tmp_path / "front.key"),
                      "iso_dir": str(self.iso_dir), "iso_staging_dir": str(self.staging),
                      "max_request_bytes": CHUNK, "iso_max_bytes": 8 * 1024 ** 2},
        })
        self.db = db
        self.back: Running = start_daemon(self.cfg, db, tmp_path)
        app = create_app(self.cfg, db)
        app.config["TESTING"] = True
        add_user(db, "admin", admin=True)
        self.c: FlaskClient = app.test_client()
        assert login(self.c, "admin").status_code == 302
        self.h = {"X-CSRFToken": csrf_of(self.c)}

    def start(self, name: str, size: int, **kw: Any) -> Any:
        return self.c.post("/admin/isos/data/uploads", json={"name": name, "size": size, **kw},
                           headers=self.h)

    def put(self, iso_id: int, offset: int, data: bytes) -> Any:
        return self.c.put(f"/admin/isos/data/uploads/{iso_id}?offset={offset}", data=data,
                          headers={**self.h, "Content-Type": "application/octet-stream"})

    def upload(self, name: str, data: bytes, **kw: Any) -> int:
        r = self.start(name, len(data), **kw)
        assert r.status_code == 201, r.json
        iso_id, offset = r.json["id"], r.json["received"]
        assert r.json["chunk_bytes"] == CHUNK
        while offset < len(data):
            r = self.put(iso_id, offset, data[offset:offset + CHUNK])
            assert r.status_code == 200, r.json
            offset = r.json["received"]
        return iso_id

    def row(self, iso_id: int) -> Iso | None:
        with self.db.sessionmaker() as s:
            return s.get(Iso, iso_id)

    def settled(self, iso_id: int, timeout: float = 20) -> Iso:
        deadline = time.monotonic() + timeout
        while True:
            row = self.row(iso_id)
            assert row is not None
            if row.state in ("ready", "failed"):
                return row
            assert time.monotonic() < deadline, f"ISO {iso_id} still {row.state}"
            time.sleep(0.05)

    def files(self) -> set[str]:
        return set(os.listdir(self.iso_dir))


@pytest.fixture
def lib(tmp_path: Path, sqlite_db: Database) -> Iterator[Lib]:
    w = Lib(tmp_path, sqlite_db)
    yield w
    stop_daemon(w.back)


@pytest.fixture
def lib_both(tmp_path: Path, db: Database) -> Iterator[Lib]:
    """The same on SQLite and on MariaDB (BIGINT sizes, the unique name)."""
    w = Lib(tmp_path, db)
    yield w
    stop_daemon(w.back)


def test_upload_in_chunks_is_verified_shown_and_boots(lib_both: Lib, iso_image: bytes) -> None:
    lib = lib_both
    iso_id = lib.upload("debian-test.iso", iso_image)
    row = lib.settled(iso_id)
    assert row.state == "ready", row.error
    assert row.sha256 == sha(iso_image) and row.size == len(iso_image)
    assert row.kind == "iso9660"
    final = lib.iso_dir / "debian-test.iso"
    assert final.read_bytes() == iso_image
    assert lib.files() == {"debian-test.iso"}  # no part file left
    assert os.listdir(lib.staging) == []  # the staged upload is gone
    st = final.stat()
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o644
    page = lib.c.get("/admin/isos").get_data(as_text=True)
    assert sha(iso_image) in page and "debian-test.iso" in page
    # verified, it is offered for new machines and the backend boots it
    r = lib.c.post("/api/v1/machines?wait=20", headers=lib.h,
                   json={"name": "frommyiso", "iso": "debian-test.iso", "disk_gb": 1})
    assert r.status_code == 200, r.json
    assert "debian-test.iso" in lib.back.host.conn().lookupByName("frommyiso").XMLDesc(0)


def test_an_interrupted_upload_resumes_where_it_stopped(lib: Lib, iso_image: bytes) -> None:
    r = lib.start("resume.iso", len(iso_image))
    iso_id = r.json["id"]
    assert lib.put(iso_id, 0, iso_image[:CHUNK]).json["received"] == CHUNK
    assert lib.put(iso_id, CHUNK, iso_image[CHUNK:2 * CHUNK]).status_code == 200
    again = lib.start("resume.iso", len(iso_image))  # the page reloaded, the file re-chosen
    assert again.json["id"] == iso_id and again.json["received"] == 2 * CHUNK
    old = os.umask(0o027)  # rvd_back's unit runs with UMask=0027
    try:
        assert lib.upload("resume.iso", iso_image) == iso_id
        assert lib.settled(iso_id).state == "ready"
    finally:
        os.umask(old)
    assert (lib.iso_dir / "resume.iso").read_bytes() == iso_image
    assert (lib.iso_dir / "resume.iso").stat().st_mode & 0o777 == 0o644  # qemu reads it


def test_chunks_out_of_order_oversize_or_past_the_end_are_refused(lib: Lib,
                                                                  iso_image: bytes) -> None:
    iso_id = lib.start("order.iso", len(iso_image)).json["id"]
    ahead = lib.put(iso_id, CHUNK, iso_image[CHUNK:2 * CHUNK])
    assert ahead.status_code == 409 and ahead.json["received"] == 0
    assert "starts at byte 0" in ahead.json["detail"]
    big = lib.put(iso_id, 0, iso_image[:CHUNK + 1])
    assert big.status_code == 413 and "at most 65536" in big.json["detail"]
    assert lib.put(iso_id, 0, iso_image[:CHUNK]).status_code == 200
    again = lib.put(iso_id, 0, iso_image[:CHUNK])  # a replayed chunk
    assert again.status_code == 409 and again.json["received"] == CHUNK
    assert lib.put(iso_id, CHUNK, iso_image[CHUNK:2 * CHUNK]).status_code == 200
    end = len(iso_image) - 10
    row = lib.row(iso_id)
    assert row is not None and row.received == 2 * CHUNK and row.state == "uploading"
    with lib.db.session() as s:  # jump close to the end to try a chunk past it
        s.get(Iso, iso_id).received = end  # type: ignore[union-attr]
    over = lib.put(iso_id, end, b"x" * 100)
    assert over.status_code == 400 and "the file has" in over.json["detail"]
    assert lib.put(iso_id, "abc", b"x").status_code == 400  # type: ignore[arg-type]
    other = lib.put(999999, 0, b"x")
    assert other.status_code == 404
    assert (lib.staging / f"{iso_id}.part").stat().st_size == 2 * CHUNK
    assert lib.files() == set()


def test_not_an_iso_is_refused_and_nothing_stays(lib: Lib) -> None:
    data = os.urandom(200 * 1024)
    iso_id = lib.upload("random.iso", data)
    row = lib.settled(iso_id)
    assert row.state == "failed" and "not an ISO 9660 / UDF image" in (row.error or "")
    assert lib.files() == set() and os.listdir(lib.staging) == []
    assert "random.iso" not in lib.c.get("/api/v1/isos").json
    tiny = lib.upload("tiny.iso", b"CD001")
    assert lib.settled(tiny).state == "failed"


def test_a_wrong_checksum_is_refused(lib: Lib, iso_image: bytes) -> None:
    iso_id = lib.upload("sum.iso", iso_image, sha256="0" * 64)
    row = lib.settled(iso_id)
    assert row.state == "failed" and "SHA-256 mismatch" in (row.error or "")
    assert sha(iso_image) in (row.error or "")
    assert lib.files() == set() and os.listdir(lib.staging) == []
    ok = lib.upload("sum2.iso", iso_image, sha256=sha(iso_image).upper())
    assert lib.settled(ok).state == "ready"
    bad = lib.start("sum3.iso", 10, sha256="xyz")
    assert bad.status_code == 422 and "sha256" in bad.json["detail"]


@pytest.mark.parametrize("name", ["../evil.iso", "a/b.iso", ".hidden.iso", "x.img", "x\n.iso",
                                  "", "a\\b.iso", "..", "/etc/x.iso", "x" * 300 + ".iso"])
def test_names_with_path_tricks_are_refused(lib: Lib, name: str) -> None:
    r = lib.start(name, 100)
    assert r.status_code == 422 and r.json["detail"].startswith("name:"), r.json
    u = lib.c.post("/admin/isos/url", data={"name": name, "url": "http://127.0.0.1/x.iso",
                                            "sha256": "0" * 64, "csrf_token": lib.h["X-CSRFToken"]})
    assert u.status_code == 302
    with lib.db.sessionmaker() as s:
        assert s.query(Iso).count() == 0
    assert os.listdir(lib.staging) == [] and lib.files() == set()


def test_the_backend_does_not_follow_a_swapped_staged_file(lib: Lib, iso_image: bytes) -> None:
    """What the web account could do: replace its staged upload with a link to root's file."""
    iso_id = lib.start("swap.iso", len(iso_image)).json["id"]
    part = lib.staging / f"{iso_id}.part"
    part.unlink()
    part.symlink_to("/etc/shadow")
    with lib.db.session() as s:
        row = s.get(Iso, iso_id)
        assert row is not None
        row.state, row.received = "verifying", len(iso_image)
    lib.back.ok("iso_import", {"iso_id": iso_id})
    row = lib.settled(iso_id)
    assert row.state == "failed" and "symbolic link" in (row.error or "")
    assert lib.files() == set()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving ``root``."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def register(lib: Lib, name: str, url: str, sha256: str) -> Any:
    return lib.c.post("/admin/isos/url", data={"name": name, "url": url, "sha256": sha256,
                                               "csrf_token": lib.h["X-CSRFToken"]})


def row_named(lib: Lib, name: str) -> Iso:
    with lib.db.sessionmaker() as s:
        row = s.query(Iso).filter_by(name=name).one()
        return row


def test_url_download_in_the_background_verified(lib_both: Lib, iso_image: bytes,
                                                 http_root: tuple[str, Path]) -> None:
    lib = lib_both
    base, root = http_root
    (root / "netinst.iso").write_bytes(iso_image)
    (root / "page.iso").write_bytes(b"<html>not an image</html>" * 3000)
    assert register(lib, "net.iso", f"{base}/netinst.iso", sha(iso_image)).status_code == 302
    row = lib.settled(row_named(lib, "net.iso").id)
    assert row.state == "ready", row.error
    assert row.sha256 == sha(iso_image) and row.received == row.size == len(iso_image)
    assert (lib.iso_dir / "net.iso").read_bytes() == iso_image
    # a wrong checksum, a page that is no image, a 404: failed with the reason, no file
    register(lib, "wrong.iso", f"{base}/netinst.iso", "1" * 64)
    register(lib, "page.iso", f"{base}/page.iso", sha(b"x"))
    register(lib, "gone.iso", f"{base}/gone.iso", "2" * 64)
    reasons = {n: lib.settled(row_named(lib, n).id).error or "" for n in
               ("wrong.iso", "page.iso", "gone.iso")}
    assert "SHA-256 mismatch" in reasons["wrong.iso"]
    assert "not an ISO 9660 / UDF image" in reasons["page.iso"]
    assert "HTTP 404" in reasons["gone.iso"]
    assert lib.files() == {"net.iso"}
    listing = lib.c.get("/admin/isos/data/").json
    assert {i["name"]: i["state"] for i in listing} == {
        "net.iso": "ready", "wrong.iso": "failed", "page.iso": "failed", "gone.iso": "failed"}
    assert lib.c.get("/api/v1/isos").json == ["net.iso"]


def test_url_schemes_other_than_http_are_refused(lib: Lib) -> None:
    for url in ("file:///etc/shadow", "ftp://127.0.0.1/x.iso", "http:///x.iso", "x"):
        register(lib, "f.iso", url, "0" * 64)
        with lib.db.sessionmaker() as s:
            assert s.query(Iso).count() == 0, url
    with lib.db.session() as s:  # planted by a compromised front: the backend refuses too
        s.add(Iso(name="f.iso", state="downloading", source="url", url="file:///etc/shadow"))
    with lib.db.sessionmaker() as s:
        iso_id = s.query(Iso).one().id
    assert "only http:// and https://" in lib.back.fails("iso_download", {"iso_id": iso_id})
    assert lib.files() == set()


def test_delete_is_refused_while_a_machine_uses_the_iso(lib: Lib, iso_image: bytes) -> None:
    iso_id = lib.upload("used.iso", iso_image)
    assert lib.settled(iso_id).state == "ready"
    mid = add_machine(lib.db, "installer", None, iso="used.iso")
    r = lib.c.post(f"/admin/isos/{iso_id}/delete", data={"csrf_token": lib.h["X-CSRFToken"]},
                   follow_redirects=True)
    assert "used by installer" in r.get_data(as_text=True)
    assert "used by installer" in lib.back.fails("iso_remove", {"iso_id": iso_id})
    assert lib.files() == {"used.iso"}
    page = lib.c.get("/admin/isos").get_data(as_text=True)
    assert "installer" in page
    with lib.db.session() as s:
        from ravada.db import Machine
        s.delete(s.get(Machine, mid))
    lib.c.post(f"/admin/isos/{iso_id}/delete", data={"csrf_token": lib.h["X-CSRFToken"]})
    deadline = time.monotonic() + 10
    while lib.row(iso_id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lib.files() == set()


def test_files_put_in_by_hand_are_checked_and_only_images_offered(lib: Lib,
                                                                   iso_image: bytes) -> None:
    (lib.iso_dir / "manual.iso").write_bytes(iso_image)
    (lib.iso_dir / "notes.iso").write_bytes(b"just text\n" * 5000)
    before = {i["name"]: i["state"] for i in lib.c.get("/admin/isos/data/").json}
    assert before == {"manual.iso": "unverified", "notes.iso": "unverified"}
    assert lib.back.ok("iso_scan")["found"] == 2
    ids = {n: row_named(lib, n).id for n in ("manual.iso", "notes.iso")}
    assert lib.settled(ids["manual.iso"]).sha256 == sha(iso_image)
    assert lib.settled(ids["notes.iso"]).state == "failed"
    assert lib.c.get("/api/v1/isos").json == ["manual.iso"]
    error = lib.back.fails("create", {"name": "boot-notes", "iso": "notes.iso", "disk_gb": 1})
    assert "not ready" in error


def test_image_kind_reads_the_volume_descriptors(iso_image: bytes) -> None:
    assert isofmt.image_kind(iso_image[:isofmt.HEAD_BYTES]) == "iso9660"
    udf = bytearray(isofmt.HEAD_BYTES)
    for i, ident in enumerate((b"BEA01", b"NSR03", b"TEA01")):
        at = isofmt.DESCRIPTORS_AT + i * isofmt.SECTOR
        udf[at:at + 6] = b"\0" + ident
    assert isofmt.image_kind(bytes(udf)) == "udf"
    assert isofmt.image_kind(bytes(isofmt.HEAD_BYTES)) is None
    only_bea = bytes(udf[:isofmt.DESCRIPTORS_AT + isofmt.SECTOR])
    assert isofmt.image_kind(only_bea) is None


@pytest.mark.parametrize("front, message", [
    ({"iso_dir": "/srv/isos", "iso_staging_dir": "/srv/isos/"}, "front.iso_staging_dir: must not"),
    ({"iso_staging_dir": "staging"}, "front.iso_staging_dir: an absolute path"),
    ({"iso_max_bytes": 1000}, "front.iso_max_bytes: from 1048576"),
    ({"iso_upload_abandon_hours": 0}, "front.iso_upload_abandon_hours: from 1 to 8760"),
    ({"iso_upload_abandon_hours": 8761}, "front.iso_upload_abandon_hours: from 1 to 8760"),
    ({"iso_upload_abandon_hours": "24"}, "front.iso_upload_abandon_hours"),
])
def test_config_checks_the_library_keys(front: dict[str, Any], message: str,
                                        tmp_path: Path) -> None:
    with pytest.raises(rconfig.ConfigError, match=message):
        rconfig.from_dict({"front": front, "queue": {"socket": str(tmp_path / "q.sock")}})
