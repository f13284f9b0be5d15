"""URL downloads of the ISO library that resume with HTTP Range instead of starting over.

The bytes go into the hidden part file ``.<id>.part`` of root's ISO directory (see
:mod:`ravada.back.isofiles`), which outlives a dropped connection and an rvd_back
restart: the next attempt asks for ``Range: bytes=<part size>-`` and appends what a
``206`` brings. A server that ignores the range (``200``) or answers for another
representation (a changed ``ETag``/``Last-Modified`` under ``If-Range``) sends the whole
body again and the part starts over; the SHA-256 the admin gave is checked on the whole
file at the end in every case, so a resumed file is never trusted for being resumed.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ravada import isofmt
from ravada.back import isofiles
from ravada.back.errors import RequestError

log = logging.getLogger(__name__)

NET_TIMEOUT = 30.0  # seconds a download may stall before the attempt counts as dropped
DROPS = 5  # attempts in a row without a byte of progress before the download fails
BACKOFF_MAX = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)$")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise RequestError(f"redirected to {newurl!r}: only http(s) is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Dropped(Exception):
    """The connection ended before the body did: try again from where the part ends."""


@dataclass
class Progress:
    """What the row shows: ``on_size`` gets the total once known, ``progress`` the bytes
    on disk (throttled by the caller)."""

    on_size: Callable[[int], None]
    progress: Callable[[int], None]


def _open(url: str, have: int, validator: str | None) -> http.client.HTTPResponse:
    headers = {"User-Agent": "ravada-rvd_back"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if validator:
            headers["If-Range"] = validator
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    req = urllib.request.Request(url, headers=headers)
    try:
        return opener.open(req, timeout=NET_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after `have`: maybe complete already
            return exc  # type: ignore[return-value]
        if exc.code >= 500 or exc.code == 408:
            raise _Dropped(f"HTTP {exc.code} {exc.reason}") from None
        raise RequestError(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Dropped(str(getattr(exc, "reason", exc))) from None


def _total(resp: http.client.HTTPResponse, have: int, max_bytes: int) -> tuple[int, int | None]:
    """(where this body starts, the file's total size or None) from the status and headers."""
    if resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
        if m is None or int(m.group(1)) != have:
            raise _Dropped(f"a range answer that does not start at byte {have}")
        total = None if m.group(3) == "*" else int(m.group(3))
        start = have
    else:
        length = resp.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        start = 0
    if total is not None and total > max_bytes:
        raise RequestError(f"the server announces {total} bytes: larger than "
                           f"front.iso_max_bytes ({max_bytes})")
    return start, total


def _attempt(url: str, fd: int, have: int, validator: str | None, max_bytes: int,
             stop: Callable[[], bool], show: Progress) -> tuple[bool, int, str | None]:
    """One request: (complete, bytes now in the part, validator of the representation)."""
    resp = _open(url, have, validator)
    with resp:
        if resp.status == 416:
            m = re.match(r"bytes \*/(\d+)$", resp.headers.get("Content-Range", "").strip())
            if m and int(m.group(1)) == have:
                return True, have, validator
            have = 0  # the part is longer than the file now: start over
            os.ftruncate(fd, 0)
            return False, 0, None
        start, total = _total(resp, have, max_bytes)
        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or None
        if validator and validator.startswith("W/"):
            validator = None  # a weak ETag may not be used with If-Range
        if start != have:
            log.info("%s: the server sent the whole file again: starting over", url)
            os.ftruncate(fd, 0)
            have = 0
        if total is not None:
            show.on_size(total)
        while True:
            if stop():
                raise isofiles.Stopped()
            try:
                block = resp.read1(isofiles.BLOCK)
            except (OSError, http.client.HTTPException) as exc:
                raise _Dropped(f"after {have} bytes: {exc}") from None
            if not block:
                break
            if have + len(block) > max_bytes:
                raise RequestError(f"larger than front.iso_max_bytes ({max_bytes})")
            os.pwrite(fd, block, have)
            before, have = have, have + len(block)
            if before < isofmt.HEAD_BYTES <= have:
                isofiles.verify_head(os.pread(fd, isofmt.HEAD_BYTES, 0))  # fail early
            show.progress(have)
    if total is not None and have < total:
        raise _Dropped(f"the connection ended after {have} of {total} bytes")
    if total is not None and have > total:
        raise RequestError(f"the server sent {have} bytes, more than the {total} it announced")
    return True, have, validator


def download(url: str, iso_dir: str, iso_id: int, *, max_bytes: int,
             stop: Callable[[], bool], sleep: Callable[[float], object],
             show: Progress) -> int:
    """Bring the part file of ``iso_id`` to the whole body of ``url``; its size.

    A dropped connection is tried again with a Range from the part's end (``DROPS`` times in
    a row without progress, waiting 1, 2, 4 … s; ``sleep`` returns early when rvd_back
    stops). :class:`~ravada.back.isofiles.Stopped` leaves the part for the next start."""
    url = isofiles.check_url(url)
    fd = isofiles.open_part(iso_dir, iso_id)
    try:
        have = os.fstat(fd).st_size
        if have:
            log.info("ISO %d: resuming the download of %s at byte %d", iso_id, url, have)
            show.progress(have)
        validator: str | None = None
        drops = 0
        while True:
            before = have
            try:
                done, have, validator = _attempt(url, fd, have, validator, max_bytes, stop,
                                                 show)
                if done:
                    break
            except _Dropped as exc:
                have = os.fstat(fd).st_size
                drops = 0 if have > before else drops + 1
                if drops >= DROPS:
                    raise RequestError(f"download failed: {exc}") from None
                log.warning("ISO %d: download dropped (%s); resuming at byte %d", iso_id, exc,
                            have)
                sleep(min(BACKOFF_MAX, 2.0 ** drops))
                if stop():
                    raise isofiles.Stopped() from None
        os.fsync(fd)
        return have
    finally:
        os.close(fd)
