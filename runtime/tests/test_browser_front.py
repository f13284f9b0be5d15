# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""The front as a person sees it: headless Debian chromium driven by Playwright.

Logs in, starts a desktop, waits on the live progress, reaches the display page and
takes screenshots (saved to docs/screenshots/ for the README). The backend is the
contract-level stub of test_front_support on the real queue: libvirt's test driver
gives the real rvd_back no display ports (see test_browser_front_real_backend).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_front_support import PASSWORD, World, tiny_png, world  # noqa: F401
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def served(world: World) -> Iterator[tuple[World, str]]:
    server = make_server("127.0.0.1", 0, world.app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield world, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    t.join(5)


@pytest.fixture
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _desktop_png(path: Path) -> None:
    """A screenshot that looks like a desktop at thumbnail size."""
    import struct
    import zlib

    w, h = 640, 400
    rows = []
    for y in range(h):
        if y >= h - 28:
            px = b"\x22\x2a\x36"
        else:
            px = bytes((30 + y // 8, 70 + y // 6, 140 + y // 5))
        rows.append(b"\x00" + px * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def test_login_start_desktop_and_display_page(served: tuple[World, str], browser: object,
                                             tmp_path: Path) -> None:
    w, base = served
    assert tiny_png()  # the stub's default screenshots are tiny; draw a desktop instead
    real_handle = w.backend._handle

    def handle(rid: int) -> None:
        real_handle(rid)
        for png in (tmp_path / "shots").glob("*.png"):
            _desktop_png(png)
    w.backend._handle = handle  # type: ignore[method-assign]
    with w.db.session() as s:
        from ravada.db import Machine
        s.get(Machine, w.base).description = "Debian 12 desktop with LibreOffice"
    page = browser.new_page(viewport={"width": 1100, "height": 720})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=name]", "bob")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#bases")
    assert page.title().startswith("Desktops")
    assert page.locator("h1").inner_text() == "Desktops"
    assert page.locator("[data-start]").first.is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "user.png"), full_page=True)

    page.click("[data-start]")
    page.wait_for_url("**/machine/*", timeout=15000)
    page.wait_for_selector("#display-password")
    assert page.locator("h1").inner_text().startswith("desk-bob")
    assert page.locator("#display-password").inner_text().startswith("Pw")
    assert page.locator("#vv-link").is_visible() and page.locator("#browser-link").is_visible()
    assert page.locator("#vnc-address").inner_text().startswith("127.0.0.1:")
    page.wait_for_selector("#thumb:not([hidden])", timeout=10000)
    assert page.evaluate("document.getElementById('thumb').naturalWidth") == 640
    assert "Error" not in page.title()
    page.screenshot(path=str(SHOTS / "display.png"), full_page=True)
    assert not errors, errors
    # The display page opened the display for this browser's address.
    assert w.requests("open_display")[-1].args == {"client_ip": "127.0.0.1"}


def test_browser_front_real_backend() -> None:
    pytest.skip("rvd_back on libvirt's test:///default cannot open a display (the test driver "
                "has no graphics ports and no virDomainUpdateDeviceFlags); the molecule e2e "
                "test drives the real pair on KVM")
