"""An admin uploads an ISO with Debian's chromium (Playwright) and boots a machine from it.

The real rvd_back (test:///default) and rvd_front (werkzeug) share one SQLite database;
chunks are 64 KiB so the ~700 KiB image made by ``xorriso`` takes eleven requests, one of
which the test drops on the wire to see the page send it again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from test_browser_front import ARGS, CHROMIUM, PASSWORD, _shot, browser  # noqa: F401
from test_isolib import iso_image  # noqa: F401
from werkzeug.serving import make_server

from ravada import config as rconfig
from ravada import queue, waiters
from ravada.back.admin import add_user
from ravada.back.daemon import Daemon
from ravada.db import Database, Iso, Machine, Request
from ravada.front import create_app

pytestmark = [pytest.mark.browser]
CHUNK = 64 * 1024


@pytest.fixture
def site(tmp_path: Path, sqlite_db: Database) -> Iterator[tuple[str, Database, Daemon]]:
    for sub in ("isos", "staging"):
        (tmp_path / sub).mkdir()
    cfg = rconfig.from_dict({
        "database": {"url": sqlite_db.url},
        "libvirt": {"uri": "test:///default", "storage_pool": "default-pool"},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"),
                  "iso_dir": str(tmp_path / "isos"),
                  "iso_staging_dir": str(tmp_path / "staging"), "max_request_bytes": CHUNK},
    })
    daemon = Daemon(cfg, db=sqlite_db, screenshot_dir=tmp_path / "shots", stop_wait=5)
    daemon.start()
    back = threading.Thread(target=daemon.run, name="rvd_back", daemon=True)
    back.start()
    server = make_server("127.0.0.1", 0, create_app(cfg, sqlite_db), threaded=True)
    front = threading.Thread(target=server.serve_forever, name="rvd_front", daemon=True)
    front.start()
    add_user(sqlite_db, "admin", PASSWORD, admin=True)
    try:
        yield f"http://127.0.0.1:{server.server_port}", sqlite_db, daemon
    finally:
        server.shutdown()
        front.join(5)
        with sqlite_db.sessionmaker() as s:
            ids = s.scalars(select(Machine.id)).all()
        for mid in ids:  # test:///default lives as long as the process
            rid = queue.submit(sqlite_db, cfg.queue.socket, "remove", machine_id=mid)
            assert queue.wait_for(sqlite_db, rid, 20).status == queue.DONE
        daemon.stop()
        back.join(15)
        daemon.close()


def test_admin_uploads_an_iso_and_creates_a_machine_from_it(
        site: tuple[str, Database, Daemon], browser: Any, iso_image: bytes,  # noqa: F811
        tmp_path: Path) -> None:
    url, db, daemon = site
    iso = tmp_path / "installer.iso"
    iso.write_bytes(iso_image)
    digest = hashlib.sha256(iso_image).hexdigest()
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e} {e.stack}"))
    dropped: list[str] = []
    puts: list[int] = []

    def flaky(route: Any) -> None:
        """The third chunk's first try is lost on the wire; the page sends it again."""
        puts.append(len(route.request.post_data_buffer or b""))
        if "offset=131072" in route.request.url and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/admin/isos/data/uploads/*", flaky)
    page.goto(url + "/login")
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.click("nav >> text=ISOs")
    page.wait_for_selector("#iso-upload")
    page.set_input_files("#iso-upload input[type=file]", str(iso))
    page.fill("#iso-upload input[name=sha256]", digest)
    page.click("#iso-upload button[type=submit]")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#iso-upload-status")).to_contain_text("is ready", timeout=30000)
    assert digest in page.locator("#iso-upload-status").inner_text()
    assert page.locator("#iso-upload-progress").evaluate("e => e.value") == len(iso_image)
    assert dropped and max(puts) <= CHUNK and len(puts) == -(-len(iso_image) // CHUNK) + 1
    with db.sessionmaker() as s:
        row = s.scalar(select(Iso).where(Iso.name == "installer.iso"))
        assert row is not None and (row.state, row.sha256) == ("ready", digest)
    # the list after the reload: size, checksum, no machine yet
    page.wait_for_selector("tr[data-name='installer.iso'] .iso-sha code", timeout=10000)
    tr = page.locator("tr[data-name='installer.iso']")
    assert tr.locator(".iso-sha").inner_text() == digest
    assert "KiB" in tr.locator(".iso-size").inner_text()
    _shot(page, tmp_path, "isos")

    page.click("nav >> text=Machines")
    page.fill("input[name=name]", "installer-vm")
    page.select_option("select[name=iso]", "installer.iso")
    page.fill("input[name=disk_gb]", "1")
    page.click("text=Create")
    # (not the ".flash.ok": a live-list answer racing the POST can drop the flash's cookie;
    # a pre-existing race of the live lists, not what this test is about)
    deadline = time.monotonic() + 30
    while True:
        with db.sessionmaker() as s:
            rid = s.scalar(select(Request.id).where(Request.command == "create"))
        if rid is not None:
            break
        assert time.monotonic() < deadline, "the create request was not queued"
        time.sleep(0.1)
    assert queue.wait_for(db, rid, 20).status == queue.DONE
    xml = daemon.host.conn().lookupByName("installer-vm").XMLDesc(0)
    assert "installer.iso" in xml
    page.goto(url + "/admin/isos")
    assert "installer-vm" in page.locator("tr[data-name='installer.iso']").inner_text()
    assert not errors, errors


def test_a_transfer_s_progress_reaches_the_page_without_polling(
        site: tuple[str, Database, Daemon], browser: Any) -> None:  # noqa: F811
    """The page follows a download through the long-poll: one request waits while nothing
    moves (the old script asked every 2 s), and rvd_back's announcement moves the bar."""
    url, db, daemon = site
    with db.session() as s:  # a download under way (no backend works on it: it stays put)
        row = Iso(name="far.iso", state="downloading", source="url", url="http://x/far.iso",
                  size=1000, received=100, expected_sha256="0" * 64)
        s.add(row)
        s.flush()
        iso_id = row.id
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/admin/isos/data" in r.url else None)
    page.goto(url + "/login")
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(url + "/admin/isos")
    page.wait_for_selector("#isos[data-live-fp]", timeout=10000)
    time.sleep(5)  # quiet: the page holds one long-poll, it does not ask again
    assert len(asked) == 2 and all("/admin/isos/data/live?" in a for a in asked), asked
    bar = page.locator(f"tr[data-iso='{iso_id}'] progress")
    assert bar.evaluate("e => e.value") == 100
    with db.session() as s:
        s.execute(update(Iso).where(Iso.id == iso_id).values(received=600))
    t0 = time.monotonic()
    waiters.announce(daemon.config.queue.socket, [waiters.ISOS])  # what rvd_back's write does
    while bar.evaluate("e => e.value") != 600:  # (wait_for_function would eval: CSP)
        assert time.monotonic() - t0 < 3, "the announce did not move the bar"
        time.sleep(0.05)
    assert len(asked) == 3
    assert not errors, errors
