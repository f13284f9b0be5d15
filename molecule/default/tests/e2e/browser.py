"""Headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright).

Never ``playwright install``: the browser is the Debian package. The helpers
open the product's pages and read the noVNC canvas back as a PNG, so the test
can assert that the guest's screen really is on the page.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--ignore-certificate-errors",
]

# The largest canvas on the page (noVNC draws the guest's screen on one), as a PNG data URL.
_CANVAS_PNG = """() => {
    const canvases = [...document.querySelectorAll('canvas')]
        .filter(c => c.width > 16 && c.height > 16)
        .sort((a, b) => b.width * b.height - a.width * a.height);
    return canvases.length ? canvases[0].toDataURL('image/png') : null;
}"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium browser, closed on exit."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> Page:
    """A fresh page in its own context (own cookies), accepting the self-signed certificate."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280,
                                                                      "height": 900})
    return context.new_page()


def canvas_png(page: Page) -> bytes | None:
    """The pixels of the page's largest canvas as PNG bytes, or None without a canvas."""
    url = page.evaluate(_CANVAS_PNG)
    if not url:
        return None
    return base64.b64decode(url.split(",", 1)[1])


def wait_canvas_png(page: Page, accept: callable, timeout: float = 30.0,  # type: ignore[valid-type]
                    interval: float = 0.25) -> bytes:
    """Read the canvas until ``accept(png_bytes)`` is true; raise ``TimeoutError`` after *timeout*.

    A console connects, negotiates and then paints: the first frames can be
    empty, so the canvas is read again every *interval* seconds.
    """
    deadline = time.monotonic() + timeout
    last: bytes | None = None
    while time.monotonic() < deadline:
        last = canvas_png(page)
        if last is not None and accept(last):
            return last
        page.wait_for_timeout(interval * 1000)
    state = "no canvas on the page" if last is None else "canvas stayed blank"
    raise TimeoutError(f"browser console: {state} after {timeout}s ({page.url})")
