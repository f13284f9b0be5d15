"""A real VNC client (vncdotool) against a guest's display.

Each attempt runs in its own Python process: vncdotool drives a Twisted reactor
in a thread that cannot be restarted once stopped, and a hung handshake must
not hang the test (the process is killed at the timeout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SNIPPET = """
import json, os, sys, warnings
warnings.simplefilter("ignore")
from vncdotool import api
from vncdotool.client import AuthenticationError
server, password, path, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
try:
    client = api.connect(server, password=password or None, timeout=timeout)
    client.timeout = timeout
    client.captureScreen(path)
    client.disconnect()
    result = {"ok": True, "error": None, "kind": None}
except AuthenticationError as exc:
    result = {"ok": False, "error": str(exc), "kind": "auth"}
except Exception as exc:  # noqa: BLE001 - report any failure to the parent
    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "other"}
print(json.dumps(result), flush=True)
os._exit(0)
"""


@dataclass(frozen=True)
class VncResult:
    """The outcome of one VNC connection: ``ok``, or why not (``kind``: auth / other)."""

    ok: bool
    error: str | None
    kind: str | None

    @property
    def refused(self) -> bool:
        """True when the server refused the password."""
        return self.kind == "auth"


def capture(host: str, port: int, password: str | None, path: Path,
            timeout: float = 20.0, prefix: Sequence[str] = ()) -> VncResult:
    """Connect to ``host:port`` with *password* and save the screen as PNG at *path*.

    *prefix* runs the client elsewhere, e.g. ``ip netns exec NS`` (an admin workstation).
    """
    server = f"{host}::{port}"
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", _SNIPPET, server, password or "", str(path),
             str(timeout)],
            capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        return VncResult(False, f"no answer from {server} within {timeout}s", "timeout")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return VncResult(False, f"vnc client crashed: {proc.stderr.strip()[-500:]}", "other")
    data = json.loads(lines[-1])
    return VncResult(data["ok"], data["error"], data["kind"])
