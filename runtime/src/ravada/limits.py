"""Input limits and name rules shared by rvd_front (validation) and rvd_back (request args).

One module so that the front never queues a request the backend will refuse: both
sides import these values and helpers. It depends on nothing but the standard library.
Patterns are used with ``fullmatch`` (``match`` with ``$`` lets a trailing newline through).
"""

from __future__ import annotations

import re
from typing import Any

# Machine names become libvirt domain names, volume names and firewall comments.
MACHINE_NAME_MAX = 48
MACHINE_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MACHINE_NAME_MAX - 1}}}")
MACHINE_NAME_HINT = (f"1-{MACHINE_NAME_MAX} letters, digits, '_' or '-', "
                     "starting with a letter or digit")

USERNAME_MAX = 64
USERNAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{USERNAME_MAX - 1}}}")
USERNAME_HINT = "letters, digits and . _ @ - only, starting with a letter or digit"

PASSWORD_MIN, PASSWORD_MAX = 8, 256

# Inclusive ranges of a new machine's size.
MEMORY_MB = (64, 65536)
VCPUS = (1, 64)
DISK_GB = (1, 2048)

# Seconds a user may give a shutdown before it is forced.
SHUTDOWN_TIMEOUT = (1, 3600)

# Nesting depth of a JSON request body (far above any real request; far below recursion).
JSON_MAX_DEPTH = 32


def machine_name_ok(name: Any) -> bool:
    """True for a string that is a whole valid machine name (no trailing newline)."""
    return isinstance(name, str) and MACHINE_NAME_RE.fullmatch(name) is not None


def username_ok(name: Any) -> bool:
    return isinstance(name, str) and USERNAME_RE.fullmatch(name) is not None


def in_range(value: Any, bounds: tuple[int, int]) -> bool:
    """An int (not a bool) within ``bounds``."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and bounds[0] <= value <= bounds[1])
