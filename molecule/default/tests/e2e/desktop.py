"""Is it the Debian desktop (scripts/build-guest-image.sh), not a firmware screen?

The guest image paints its root window in one known colour (``xsetroot -solid '#3465a4'``)
and opens an xterm titled "Ravada desktop". SeaBIOS, "No bootable device", a kernel console
or a black screen have none of that colour, so :func:`shows_desktop` fails on them.

The guest agent helpers run ``virsh qemu-agent-command`` inside the container (testinfra):
they write and read files in the guest and read its uptime, which is how the hibernate test
knows the session survived (a cold boot would reset the uptime and lose a file in /tmp).
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from PIL import Image

from . import spice
from .target import Target
from .xdisplay import Xvfb, remote_viewer, wait_until

WALLPAPER = (0x34, 0x65, 0xA4)
TOLERANCE = 12  # per channel: JPEG-free paths give the exact colour, scaling blurs edges
MIN_FRACTION = 0.25  # share of the screen in the wallpaper colour (the xterm covers some)
BOOT_LIMIT = 30.0  # issue #10: click to a painted desktop on 2 nested-KVM cores


def wallpaper_fraction(image: Image.Image | bytes | str | Path) -> float:
    """Share of pixels within :data:`TOLERANCE` of the wallpaper colour."""
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        image = Image.open(image)
    rgb = image.convert("RGB")
    r0, g0, b0 = WALLPAPER
    near = 0
    data = rgb.getdata()
    for r, g, b in data:
        if abs(r - r0) <= TOLERANCE and abs(g - g0) <= TOLERANCE and abs(b - b0) <= TOLERANCE:
            near += 1
    return near / max(1, rgb.width * rgb.height)


def shows_desktop(image: Image.Image | bytes | str | Path) -> bool:
    """True when the picture is the desktop's wallpaper (mostly)."""
    return wallpaper_fraction(image) >= MIN_FRACTION


def guest_screen(target: Target, name: str) -> Image.Image:
    """The guest's screen now (``virsh screenshot`` in the container)."""
    out = target.run("virsh -q screenshot %s /tmp/e2e-screen.ppm >/dev/null && "
                     "base64 -w0 /tmp/e2e-screen.ppm", name).stdout
    return Image.open(io.BytesIO(base64.b64decode(out)))


def wait_for_desktop(target: Target, name: str, timeout: float = 60.0) -> tuple[float, Image.Image]:
    """Seconds until the guest shows the desktop, and that screen; AssertionError after
    ``timeout`` with the last wallpaper share."""
    start = time.monotonic()
    last = 0.0
    while True:
        screen = guest_screen(target, name)
        last = wallpaper_fraction(screen.resize((screen.width // 4, screen.height // 4)))
        if last >= MIN_FRACTION:
            return time.monotonic() - start, screen
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{name} shows no desktop after {timeout:.0f}s "
                                 f"(wallpaper share {last:.3f})")
        time.sleep(1.0)


def resize_check(xvfb: Xvfb, vv_text: str, workdir: Path, target: Target, name: str
                 ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Open remote-viewer, resize its window (xdotool), wait for the guest to follow.

    Returns (guest size before, guest size after, the window size asked for).
    """
    title = spice.read_vv(vv_text).get("title", "")
    vv_path = workdir / "resize.vv"
    vv_path.write_text(vv_text)
    with remote_viewer(xvfb, vv_path, log=workdir / "remote-viewer.log"):
        wait_until(lambda: any(w.startswith(title) for w in xvfb.windows()), 30,
                   interval=0.25, what=f"remote-viewer window {title!r}")
        time.sleep(2)  # the agent's first monitor configuration settles
        before = guest_screen(target, name).size
        wanted = (900 if before[0] != 900 else 1100, 700)
        subprocess.run(["xdotool", "search", "--name", "^" + re.escape(title), "windowsize",
                        "%@", str(wanted[0]), str(wanted[1])], env=xvfb.env(), check=True,
                       capture_output=True, timeout=10)
        try:
            after = wait_until(lambda: _resized(target, name, before, wanted[0]), 30,
                               interval=0.5, what="the guest screen following the window")
        except TimeoutError:
            after = guest_screen(target, name).size
    return before, after, wanted


def _resized(target: Target, name: str, before: tuple[int, int], width: int
             ) -> tuple[int, int] | None:
    size = guest_screen(target, name).size
    return size if size != before and abs(size[0] - width) <= 16 else None


# ---------------------------------------------------------------- guest agent

def agent(target: Target, name: str, command: str, **arguments: Any) -> Any:
    """One guest agent command; its ``return`` value."""
    payload = json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})})
    out = target.run("virsh -q qemu-agent-command --timeout 10 %s %s", name, payload).stdout
    return json.loads(out)["return"]


def agent_answers(target: Target, name: str) -> bool:
    result = target.host.run("virsh -q qemu-agent-command --timeout 5 %s %s", name,
                             '{"execute":"guest-ping"}')
    return result.rc == 0


def write_file(target: Target, name: str, path: str, text: str) -> None:
    handle = agent(target, name, "guest-file-open", path=path, mode="w")
    agent(target, name, "guest-file-write", handle=handle,
          **{"buf-b64": base64.b64encode(text.encode()).decode()})
    agent(target, name, "guest-file-close", handle=handle)


def read_file(target: Target, name: str, path: str) -> str:
    handle = agent(target, name, "guest-file-open", path=path, mode="r")
    try:
        data = agent(target, name, "guest-file-read", handle=handle, count=65536)
    finally:
        agent(target, name, "guest-file-close", handle=handle)
    return base64.b64decode(data["buf-b64"]).decode()


def uptime(target: Target, name: str) -> float:
    """Seconds since the guest's kernel booted (``/proc/uptime``)."""
    return float(read_file(target, name, "/proc/uptime").split()[0])


def graphical_session(target: Target, name: str) -> bool:
    """The agent confirms X runs in the guest (a process named Xorg)."""
    handle = agent(target, name, "guest-exec", path="/usr/bin/pgrep", arg=["-x", "Xorg"],
                   **{"capture-output": True})["pid"]
    for _ in range(50):
        status = agent(target, name, "guest-exec-status", pid=handle)
        if status.get("exited"):
            return status.get("exitcode") == 0
        time.sleep(0.1)
    return False
