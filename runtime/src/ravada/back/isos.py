"""The one check of an ISO name, for a request argument and for a name read from a row.

rvd_back (root) hands the resulting path to libvirt, which relabels the file for
qemu and boots it. The name comes from the front (the ``ravada`` account) or from
the database the front writes, so neither is trusted: the name is a plain file
name ending in ``.iso``; its real path (symlinks resolved) stays inside the ISO
directory; the directory itself is root's (the front only lists it) and not
writable by anyone else, so the web account cannot swap it for its own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ravada.back.errors import RequestError

MAX_NAME = 255


def check_name(name: object, iso_dir: str) -> str:
    """The ISO name if it is a plain ``*.iso`` file name; else RequestError."""
    if (not isinstance(name, str) or not name or len(name) > MAX_NAME or "/" in name
            or "\0" in name or name.startswith(".") or not name.lower().endswith(".iso")
            or not name.isprintable()):
        raise RequestError(f"bad iso {name!r}: a file name ending in .iso in {iso_dir}")
    return name


def _trusted_dir(iso_dir: str) -> str:
    """The real path of the ISO directory, after checking who may write it."""
    real = os.path.realpath(iso_dir)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise RequestError(f"ISO directory {iso_dir}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RequestError(f"ISO directory {iso_dir} is not a directory")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RequestError(f"ISO directory {iso_dir} must belong to root and be writable by "
                           "root only")
    return real


def resolve(iso_dir: str, name: object, *, must_exist: bool = True) -> str | None:
    """The real path of ISO ``name`` in ``iso_dir``, checked; None when it is missing
    and ``must_exist`` is false (a base whose ISO was removed keeps working)."""
    check_name(name, iso_dir)
    assert isinstance(name, str)
    real_dir = _trusted_dir(iso_dir)
    path = os.path.realpath(Path(real_dir) / name)
    if os.path.commonpath([real_dir, path]) != real_dir or path == real_dir:
        raise RequestError(f"ISO {name!r} leads outside {iso_dir}: refused")
    if not os.path.isfile(path):
        if os.path.lexists(Path(real_dir) / name) or must_exist:
            raise RequestError(f"ISO {name!r} not found in {iso_dir}")
        return None
    return path
