"""File work of the ISO library, done by rvd_back (root).

An upload is written by the web account into the staging directory, which that account
owns: it may still hold the file open, or a hard link to it, and change it after it was
checked. So root never moves a staged file into the ISO directory: it copies it into a
new file of its own there, hashing and checking the bytes it copies, and the copy gets
its name only once it is complete and verified (a hidden ``.<id>.part`` until then,
which no ISO name can be). A URL download writes that part file itself
(:mod:`ravada.back.isodownload`, resumable) and :func:`verify_part` checks it the same way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ravada import isofmt
from ravada.back.errors import RequestError
from ravada.back.isos import _trusted_dir

BLOCK = 1024 * 1024


class Stopped(Exception):
    """The backend is stopping: the transfer resumes at the next start."""


@dataclass(frozen=True)
class Verified:
    size: int
    sha256: str
    kind: str


def part_name(iso_id: int) -> str:
    return f".{iso_id}.part"


def staged_name(iso_id: int) -> str:
    """An upload's file in the staging directory: named by its row, never by the admin."""
    return f"{iso_id}.part"


def open_dir(path: str, *, trusted: bool) -> int:
    """An O_NOFOLLOW descriptor of a directory; ``trusted``: root's and nobody else's."""
    real = _trusted_dir(path) if trusted else path
    try:
        return os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise RequestError(f"directory {path}: {exc.strerror}") from None


def unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def verify_head(head: bytes) -> str:
    kind = isofmt.image_kind(head)
    if kind is None:
        raise RequestError("not an ISO 9660 / UDF image (no CD001 or NSR02/NSR03 volume "
                           "descriptor from byte 32768)")
    return kind


def into_library(iso_dir: str, iso_id: int, name: str, chunks: Iterator[bytes], *,
                 expected_sha256: str | None, max_bytes: int) -> Verified:
    """Write ``chunks`` to ``iso_dir/name`` through a hidden part file; the name appears
    only after the image is checked (descriptor, size, SHA-256) and never replaces a file."""
    if (err := isofmt.name_error(name)) is not None:
        raise RequestError(f"bad ISO name {name!r}: {err}")
    dir_fd = open_dir(iso_dir, trusted=True)
    part = part_name(iso_id)
    try:
        unlink_quietly(part, dir_fd)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)  # readable by qemu's account whatever rvd_back's UMask
            digest, size, head, kind = hashlib.sha256(), 0, bytearray(), None
            with os.fdopen(fd, "wb", closefd=False) as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise RequestError(f"larger than front.iso_max_bytes ({max_bytes})")
                    if kind is None and len(head) < isofmt.HEAD_BYTES:
                        head += chunk[:isofmt.HEAD_BYTES - len(head)]
                        if len(head) >= isofmt.HEAD_BYTES:
                            kind = verify_head(bytes(head))  # fail early, not after 4 GB
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
        kind = kind or verify_head(bytes(head))
        sha = digest.hexdigest()
        if expected_sha256 and sha != expected_sha256:
            raise RequestError(f"SHA-256 mismatch: expected {expected_sha256}, got {sha}")
        try:
            os.link(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            raise RequestError(f"a file named {name!r} is already in {iso_dir}") from None
        return Verified(size, sha, kind)
    finally:
        unlink_quietly(part, dir_fd)
        os.close(dir_fd)


def read_blocks(fd: int, stop: Callable[[], bool],
                progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    done = 0
    while block := os.read(fd, BLOCK):
        if stop():
            raise Stopped()
        done += len(block)
        if progress:
            progress(done)
        yield block


def digest_fd(fd: int, stop: Callable[[], bool]) -> tuple[str, int, bytes]:
    """Read ``fd`` to its end: (sha256 hex, size, the head :func:`verify_head` checks)."""
    digest, size, head = hashlib.sha256(), 0, bytearray()
    for block in read_blocks(fd, stop):
        if len(head) < isofmt.HEAD_BYTES:
            head += block[:isofmt.HEAD_BYTES - len(head)]
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size, bytes(head)


def open_staged(staging_dir: str, iso_id: int, size: int) -> int:
    """The staged upload of row ``iso_id``, opened without following links, a regular file
    of exactly ``size`` bytes (the web account writes this directory)."""
    dir_fd = open_dir(staging_dir, trusted=False)
    try:
        fd = os.open(staged_name(iso_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise RequestError(f"staged upload {iso_id}: {why}") from None
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        os.close(fd)
        raise RequestError(f"staged upload {iso_id}: not a regular file of {size} bytes")
    os.set_blocking(fd, True)
    return fd


def remove_staged(staging_dir: str, iso_id: int) -> None:
    try:
        dir_fd = open_dir(staging_dir, trusted=False)
    except RequestError:
        return
    try:
        unlink_quietly(staged_name(iso_id), dir_fd)
    finally:
        os.close(dir_fd)


def check_url(url: object) -> str:
    """An http(s) URL with a host; RequestError otherwise."""
    if (err := isofmt.url_error(url)) is not None:
        raise RequestError(f"bad url {url!r}: {err}")
    assert isinstance(url, str)
    return url


def open_part(iso_dir: str, iso_id: int) -> int:
    """The part file of a download (created empty, or as a previous attempt left it)."""
    dir_fd = open_dir(iso_dir, trusted=True)
    try:
        fd = os.open(part_name(iso_id), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise RequestError(f"part file of ISO {iso_id}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RequestError(f"part file of ISO {iso_id}: not a regular file")
    os.fchmod(fd, 0o644)  # readable by qemu's account whatever rvd_back's UMask
    return fd


def remove_part(iso_dir: str, iso_id: int) -> None:
    try:
        dir_fd = open_dir(iso_dir, trusted=True)
    except RequestError:
        return
    try:
        unlink_quietly(part_name(iso_id), dir_fd)
    finally:
        os.close(dir_fd)


def verify_part(iso_dir: str, iso_id: int, name: str, *, expected_sha256: str | None,
                stop: Callable[[], bool]) -> Verified:
    """Check a downloaded part file as a whole (descriptor, SHA-256) and give it ``name``
    (never replacing a file). A refusal removes the part; a stop keeps it for the next start."""
    if (err := isofmt.name_error(name)) is not None:
        raise RequestError(f"bad ISO name {name!r}: {err}")
    fd = open_part(iso_dir, iso_id)
    try:
        sha, size, head = digest_fd(fd, stop)
    finally:
        os.close(fd)
    try:
        kind = verify_head(head)
        if expected_sha256 and sha != expected_sha256:
            raise RequestError(f"SHA-256 mismatch: expected {expected_sha256}, got {sha}")
        dir_fd = open_dir(iso_dir, trusted=True)
        try:
            os.link(part_name(iso_id), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)
        except FileExistsError:
            raise RequestError(f"a file named {name!r} is already in {iso_dir}") from None
        finally:
            os.close(dir_fd)
    finally:
        remove_part(iso_dir, iso_id)
    return Verified(size, sha, kind)
