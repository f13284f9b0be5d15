"""Open a ``.vv`` file in remote-viewer under Xvfb and look at what it shows."""

from __future__ import annotations

import configparser
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from . import images
from .xdisplay import Xvfb, remote_viewer

# Windows remote-viewer opens when it could not show the guest.
ERROR_TITLES = ("Authentication required", "Error", "Unable", "Failed")
# remote-viewer's own chrome at the top of its window: the header bar of a window (50 px), or,
# when fullscreen (without a window manager, it stays a big window), that bar plus the floating
# fullscreen toolbar under it (100 px). The grey around a smaller guest screen is dark (< 128).
HEADER_BAR = 50
FULLSCREEN_CHROME = 100
MIN_BRIGHT_PIXELS = 200  # a few characters of console text

class SpiceError(AssertionError):
    """remote-viewer did not show the guest's screen."""


@dataclass(frozen=True)
class SpiceView:
    """What remote-viewer showed: its window title, the guest area's pixels, the screenshot."""

    title: str
    stats: images.PixelStats
    screenshot: Path
    seconds: float  # from starting remote-viewer to a painted guest screen
    while_connected: Any = None  # what ``while_connected()`` returned, remote-viewer still up


def read_vv(text: str) -> dict[str, str]:
    """The ``[virt-viewer]`` section of a ``.vv`` file as a dict."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    if "virt-viewer" not in parser:
        raise SpiceError(f"not a .vv file (no [virt-viewer] section): {text[:200]!r}")
    return dict(parser["virt-viewer"])


def _guest_area(shot: Path, geometry: tuple[int, int, int, int]) -> Image.Image:
    x, y, width, height = geometry
    with Image.open(shot) as screen:
        top = y + (FULLSCREEN_CHROME if height >= screen.height else HEADER_BAR)
        return screen.crop((x, top, x + width, y + height)).copy()


def view(xvfb: Xvfb, vv_text: str, workdir: Path, screenshot: Path,
         timeout: float = 30.0, while_connected: Callable[[], Any] | None = None) -> SpiceView:
    """Open *vv_text* in remote-viewer and wait for the guest's screen; save *screenshot*.

    *while_connected* is called once the guest is painted, before remote-viewer ends
    (e.g. to look at its connections on the server).

    Raises :class:`SpiceError` naming the windows on screen when remote-viewer
    shows an error or authentication dialog, or no painted guest window in time.
    """
    fields = read_vv(vv_text)
    title = fields.get("title", "")
    if not title:
        raise SpiceError(".vv file has no title= line; cannot find remote-viewer's window")
    vv_path = workdir / "desktop.vv"
    vv_path.write_text(vv_text)
    log = workdir / "remote-viewer.log"
    start = time.monotonic()
    deadline = start + timeout
    with remote_viewer(xvfb, vv_path, log=log) as proc:
        windows: list[str] = []
        while time.monotonic() < deadline:
            windows = xvfb.windows()
            errors = [w for w in windows if w.startswith(ERROR_TITLES)]
            if errors or proc.poll() is not None:
                xvfb.screenshot(screenshot)
                raise SpiceError(f"remote-viewer failed: windows {windows}, exit {proc.poll()}, "
                                 f"log: {log.read_text()[-500:]!r}")
            named = [w for w in windows if w.startswith(title)]
            if named:
                xvfb.screenshot(screenshot)
                area = images.stats(_guest_area(screenshot, xvfb.geometry(named[0])))
                if area.bright_pixels >= MIN_BRIGHT_PIXELS:
                    seconds = time.monotonic() - start
                    seen = while_connected() if while_connected else None
                    return SpiceView(named[0], area, screenshot, seconds, seen)
            time.sleep(0.25)
        xvfb.screenshot(screenshot)
        raise SpiceError(f"no painted remote-viewer window titled {title!r} within {timeout}s; "
                         f"windows: {windows}; log: {log.read_text()[-500:]!r}")
