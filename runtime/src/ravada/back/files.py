"""Per-machine files rvd_back (root) writes for the front: screenshots.

They are readable by the ``ravada`` group only (files 0640, directory 2750, group
taken from the state directory above), never world-readable. The directory sits
in the state directory that the web account owns, so root never follows a path
there: the directory is opened once with ``O_NOFOLLOW`` and must be root's, and
every file operation is relative to that descriptor without following links.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ravada.back.errors import RequestError

DIR_MODE = 0o2750
FILE_MODE = 0o640


def _make(path: Path) -> int:
    """Create the directory if missing; the group its files get (its parent's: ravada)."""
    gid = os.stat(path.parent).st_gid
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return gid


@contextlib.contextmanager
def private_dir(path: Path) -> Iterator[int]:
    """A descriptor of ``path``, created if missing, refused unless it is our own directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gid = _make(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise RequestError(f"{path}: not a plain directory ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RequestError(f"{path} must belong to the backend's user and be writable by "
                               "it only")
        if st.st_gid != gid:
            os.fchown(fd, -1, gid)
        if st.st_mode & 0o7777 != DIR_MODE:
            os.fchmod(fd, DIR_MODE)
        yield fd
    finally:
        os.close(fd)


def write_private(directory: Path, name: str, data: bytes) -> Path:
    """Write ``directory/name`` atomically, mode 0640, without following any link."""
    tmp = f".{name}.tmp"
    with private_dir(directory) as dfd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     FILE_MODE, dir_fd=dfd)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    return directory / name


def remove_private(directory: Path, name: str) -> None:
    """Remove ``directory/name`` if there (a missing directory is fine too)."""
    if not directory.exists():
        return
    with private_dir(directory) as dfd, contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dfd)
