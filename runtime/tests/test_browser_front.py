"""The front as a person sees it: headless Debian chromium driven by Playwright.

The real pair runs in this process: rvd_back's daemon in a thread on libvirt's
test:///default driver (the only libvirt connection here: the daemon owns it) and the
real rvd_front app served by werkzeug, both on one SQLite database. A public base is
made through the real request path; a normal user logs in, clicks Start, and lands on
the display page. Screenshots go to tmp_path; with RAVADA_UPDATE_SCREENSHOTS=1 they
are also copied to docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from ravada import config as rconfig
from ravada import queue
from ravada.back.admin import add_user
from ravada.back.daemon import Daemon
from ravada.db import Database, Machine
from ravada.front import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@dataclass
class Site:
    """The real rvd_back and rvd_front, a public base and a normal user."""

    url: str
    db: Database
    cfg: rconfig.Config
    base_id: int
    base_name: str
    user: str

    def run(self, command: str, args: dict[str, Any] | None = None,
            **kw: Any) -> dict[str, Any]:
        """Submit a request as the front does and wait for rvd_back to finish it."""
        rid = queue.submit(self.db, self.cfg.queue.socket, command, args, **kw)
        req = queue.wait_for(self.db, rid, 20)
        assert req.status == queue.DONE, f"{command}: {req.status} {req.error}"
        return req.result or {}

    def machine(self, name: str) -> Machine:
        with self.db.sessionmaker() as s:
            m = s.scalar(select(Machine).where(Machine.name == name))
            assert m is not None, f"no machine {name}"
            return m


def make_config(tmp_path: Path, db_url: str) -> rconfig.Config:
    (tmp_path / "isos").mkdir(exist_ok=True)
    return rconfig.from_dict({
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default", "storage_pool": "default-pool"},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"),
                  "iso_dir": str(tmp_path / "isos")},
    })


@pytest.fixture
def site(tmp_path: Path, sqlite_db: Database) -> Iterator[Site]:
    cfg = make_config(tmp_path, sqlite_db.url)
    daemon = Daemon(cfg, db=sqlite_db, screenshot_dir=tmp_path / "shots", stop_wait=5)
    daemon.start()
    back = threading.Thread(target=daemon.run, name="rvd_back", daemon=True)
    back.start()
    server = make_server("127.0.0.1", 0, create_app(cfg, sqlite_db), threaded=True)
    front = threading.Thread(target=server.serve_forever, name="rvd_front", daemon=True)
    front.start()
    admin_id = add_user(sqlite_db, "admin", PASSWORD, admin=True)
    add_user(sqlite_db, "bob", PASSWORD)
    name = "debian12"  # test:///default lives as long as the process: removed at teardown
    s = Site(f"http://127.0.0.1:{server.server_port}", sqlite_db, cfg, 0, name, "bob")
    try:
        s.base_id = s.run("create", {"name": name, "disk_gb": 2, "memory_mb": 1024,
                                     "vcpus": 2, "owner_id": admin_id},
                          user_id=admin_id)["machine_id"]
        s.run("prepare_base", machine_id=s.base_id, user_id=admin_id)
        with sqlite_db.session() as db_s:
            base = db_s.get(Machine, s.base_id)
            base.is_public = True
            base.description = "Debian 12 desktop with LibreOffice"
        yield s
    finally:
        server.shutdown()
        front.join(5)
        try:
            _remove_all(s)
            assert not daemon.host.has_guest(name) and not daemon.host.has_guest(name + "-bob")
        finally:
            daemon.stop()
            back.join(15)
            daemon.close()
        assert not back.is_alive()


def _remove_all(s: Site) -> None:
    """Leave test:///default as found: clones first, then the base."""
    with s.db.sessionmaker() as db_s:
        ids = db_s.scalars(select(Machine.id).order_by(Machine.base_id.is_(None),
                                                       Machine.id.desc())).all()
    for mid in ids:
        s.run("remove", machine_id=mid)


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in tmp_path; copied to docs/ only when asked to."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if os.environ.get("RAVADA_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SHOTS / f"{name}.png")
    return path


def _not_an_error_page(page: Any) -> None:
    assert not page.title().startswith("Error"), page.title()
    assert page.locator(".error-detail").count() == 0
    assert page.locator("#display-problem").count() == 0


def test_login_start_desktop_and_display_page(site: Site, browser: Any,
                                             tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 720}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(site.url + "/")
    assert "/login" in page.url
    page.fill("input[name=name]", site.user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#bases")
    assert page.title().startswith("Desktops")
    assert page.locator("h1").inner_text() == "Desktops"
    card = page.locator(f"[data-base='{site.base_id}']")
    assert card.locator("h2").inner_text() == site.base_name
    assert card.locator("[data-start]").is_visible()
    _not_an_error_page(page)
    _shot(page, tmp_path, "user")

    card.locator("[data-start]").click()
    page.wait_for_url("**/machine/*", timeout=15000)
    page.wait_for_selector("#display-password")
    _not_an_error_page(page)

    # What rvd_back really did: a clone of the base for bob, running, with display ports.
    clone = site.machine(f"{site.base_name}-{site.user}")
    assert (clone.state, clone.base_id) == ("running", site.base_id)
    spice = clone.display["spice"]
    assert isinstance(spice, int) and spice >= 5900
    # the click's POST opened the display; the page shows that request's result
    assert f"/machine/{clone.id}?request=" in page.url
    assert page.locator("h1").inner_text().startswith(clone.name)
    assert page.locator("#spice-address").inner_text() == f"127.0.0.1:{spice}"
    assert page.locator("#vnc-address").count() == 0  # VNC: through the browser console
    password = page.locator("#display-password").inner_text()
    assert len(password) >= 16 and password.isprintable() and " " not in password
    assert page.locator("#browser-link").is_visible()

    # The thumbnail is the PNG the real screenshot handler took from the test driver.
    page.wait_for_selector("#thumb:not([hidden])", timeout=10000)
    page.wait_for_function("document.getElementById('thumb').complete")
    assert page.evaluate("document.getElementById('thumb').naturalWidth") > 0
    shot = Path(tmp_path / "shots" / f"{clone.id}.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    _shot(page, tmp_path, "display")

    with page.expect_download() as dl:
        page.click("#vv-link")
    vv = Path(dl.value.path()).read_text()
    assert dl.value.suggested_filename == f"{clone.name}.vv"
    assert vv.startswith("[virt-viewer]")
    spice = site.machine(clone.name).display["spice"]
    lines = vv.splitlines()
    assert f"port={spice}" in lines and "host=127.0.0.1" in lines and "type=spice" in lines
    vv_password = next(x for x in lines if x.startswith("password="))[len("password="):]
    assert len(vv_password) >= 16  # a fresh one-time password: the .vv opened the display again
    assert not errors, errors
