"""A private X server (Xvfb) and the SPICE client (remote-viewer) running in it.

:class:`Xvfb` starts ``Xvfb`` on a free display from :77 up (or ``:N``) and
returns once the server accepts clients (``-displayfd``, then one client).
:func:`remote_viewer` opens a ``.vv`` file on that display.
:meth:`Xvfb.windows` lists the top-level window titles (``xwininfo -root -tree``),
which is how the test tells the guest's window from an error dialog.
:meth:`Xvfb.screenshot` is ImageMagick's ``import -window root``.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")
_TITLE = re.compile(r'^\s+0x[0-9a-f]+ "(?P<title>[^"]*)":', re.MULTILINE)


class DisplayError(RuntimeError):
    """The X server or a client could not do what was asked."""


class Xvfb:
    """One Xvfb server on display *number*, or a free one when None (context manager)."""

    def __init__(self, number: int | None = None, size: str = "1280x1024x24") -> None:
        self.number = number
        self.size = size
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def display(self) -> str:
        """The DISPLAY value for clients."""
        return f":{self.number}"

    def env(self) -> dict[str, str]:
        """The environment for a client of this server."""
        return {**os.environ, "DISPLAY": self.display}

    def start(self, timeout: float = 15.0) -> Xvfb:
        """Start the server and wait until it accepts clients.

        Without a number, displays from :77 up are tried, skipping those with a lock
        file or socket (Xvfb refuses a display in use and exits: the next one is tried).
        """
        candidates = [self.number] if self.number is not None else [
            n for n in range(77, 177)
            if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists()
        ]
        for number in candidates[:10]:
            if self._start_on(number, timeout):
                return self
        raise DisplayError(f"Xvfb did not start on any of {candidates[:10]}")

    def _start_on(self, number: int, timeout: float) -> bool:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", f":{number}", "-screen", "0", self.size, "-nolisten", "tcp",
             "-displayfd", str(write_fd)],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        try:
            announced = _read_line(read_fd, timeout)
        finally:
            # Only after the whole line: Xvfb writes the number and the newline separately
            # and dies ("Cannot write display number") if the pipe is closed in between.
            os.close(read_fd)
        if announced != str(number):
            self.stop()
            return False
        self.number = number
        # The announcement can come before the first client is accepted: wait for one.
        try:
            wait_until(self._answers, timeout, interval=0.05, what=f"Xvfb {self.display}")
        except TimeoutError:
            self.stop()
            return False
        return True

    def _answers(self) -> bool:
        return subprocess.run(["xwininfo", "-root"], env=self.env(), capture_output=True,
                              timeout=10, check=False).returncode == 0

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def windows(self) -> list[str]:
        """Titles of the named windows on the screen.

        ``xwininfo`` fails with BadWindow when a window goes away while it walks
        the tree (clients map and unmap windows as they start): it is retried.
        """
        for _ in range(5):
            proc = subprocess.run(["xwininfo", "-root", "-tree"], env=self.env(),
                                  capture_output=True, text=True, timeout=10, check=False)
            if proc.returncode == 0:
                return [m["title"] for m in _TITLE.finditer(proc.stdout)]
        raise DisplayError(f"xwininfo failed on {self.display}: {proc.stderr.strip()}")

    def geometry(self, title: str) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the window named exactly *title*."""
        proc = subprocess.run(["xwininfo", "-name", title], env=self.env(), capture_output=True,
                              text=True, timeout=10, check=False)
        if proc.returncode != 0:
            raise DisplayError(f"no window named {title!r}: {proc.stderr.strip()}")
        fields = dict(line.strip().split(":", 1) for line in proc.stdout.splitlines()
                      if ":" in line and line.startswith("  "))
        return (int(fields["Absolute upper-left X"]), int(fields["Absolute upper-left Y"]),
                int(fields["Width"]), int(fields["Height"]))

    def screenshot(self, path: Path) -> Path:
        """Save the whole screen as PNG at *path*."""
        subprocess.run(["import", "-window", "root", str(path)], env=self.env(),
                       capture_output=True, timeout=20, check=True)
        return path


def _read_line(fd: int, timeout: float) -> str:
    """Read from *fd* up to a newline (or EOF / *timeout*)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 32)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def wait_until(probe: Callable[[], T | None], timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """Call *probe* every *interval* s until it returns a truthy value; raise after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


@contextmanager
def remote_viewer(xvfb: Xvfb, vv_file: Path, log: Path | None = None
                  ) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``remote-viewer vv_file`` on *xvfb*; it is terminated on exit."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(["remote-viewer", str(vv_file)], env=xvfb.env(), stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]
