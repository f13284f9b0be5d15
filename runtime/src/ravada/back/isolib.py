"""The ISO library on the backend side: requests, and the transfers they start.

Copying an uploaded image or downloading one can take longer than any request's
timeout, so ``iso_import`` / ``iso_download`` check their row, hand the work to
:class:`Transfers` (threads of their own) and return; the row carries the progress and
the outcome (``ready`` with its SHA-256, or ``failed`` with the reason). Interrupted
transfers start again when rvd_back starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from ravada import isofmt, waiters
from ravada.back import isodownload, isofiles
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.db import Iso, Machine, utcnow

log = logging.getLogger(__name__)

PROGRESS_EVERY = 1.0  # seconds between progress writes of a transfer
TRANSFERS = 2  # transfers at once
# Unfinished browser uploads (the front moves their ``updated_at`` with every chunk).
UNFINISHED = (Iso.state == "uploading", Iso.source == "upload")


class Transfers:
    """Background ISO transfers of one rvd_back."""

    def __init__(self, ctx: Context, workers: int = TRANSFERS) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="iso")
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def submit(self, iso_id: int) -> None:
        with self._lock:
            if iso_id in self._busy:
                return
            self._busy.add(iso_id)
        self._pool.submit(self._run, iso_id)

    def _run(self, iso_id: int) -> None:
        try:
            transfer(self.ctx, iso_id, self._stop.is_set, self._stop.wait)
        finally:
            with self._lock:
                self._busy.discard(iso_id)

    def busy(self, iso_id: int) -> bool:
        with self._lock:
            return iso_id in self._busy

    def stop(self) -> None:
        """Stop at the next block; the rows stay as they are and resume at the next start."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _row(ctx: Context, iso_id: Any) -> Iso:
    if isinstance(iso_id, bool) or not isinstance(iso_id, int):
        raise RequestError(f"bad iso_id {iso_id!r}: an integer")
    with ctx.db.sessionmaker() as s:
        row = s.get(Iso, iso_id)
        if row is None:
            raise RequestError(f"ISO {iso_id} does not exist")
        s.expunge(row)
        return row


def _set(ctx: Context, iso_id: int, **values: Any) -> None:
    with ctx.db.session() as s:
        s.execute(update(Iso).where(Iso.id == iso_id).values(**values))
    announce(ctx)


def announce(ctx: Context) -> None:
    """Wake the ISO page's long-poll (after the commit): progress is pushed, not polled."""
    waiters.announce(ctx.config.queue.socket, [waiters.ISOS])


def _throttled(ctx: Context, iso_id: int) -> Callable[[int], None]:
    last = [0.0]

    def progress(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            _set(ctx, iso_id, received=done)
    return progress


def transfer(ctx: Context, iso_id: int, stop: Callable[[], bool],
             sleep: Callable[[float], object] = time.sleep) -> None:
    """Bring row ``iso_id`` to ``ready`` or ``failed``; a stop leaves it to resume
    (``sleep`` waits between download attempts and returns early on a stop)."""
    row = _row(ctx, iso_id)
    cfg = ctx.config.front
    try:
        if row.source == "url" and row.state == "downloading":
            isodownload.download(row.url or "", cfg.iso_dir, iso_id,
                                 max_bytes=cfg.iso_max_bytes, stop=stop, sleep=sleep,
                                 show=isodownload.Progress(lambda n: _set(ctx, iso_id, size=n),
                                                           _throttled(ctx, iso_id)))
            got = isofiles.verify_part(cfg.iso_dir, iso_id, row.name,
                                       expected_sha256=row.expected_sha256, stop=stop)
        elif row.source == "upload" and row.state == "verifying":
            fd = isofiles.open_staged(cfg.iso_staging_dir, iso_id, row.size)
            try:
                got = isofiles.into_library(cfg.iso_dir, iso_id, row.name,
                                            isofiles.read_blocks(fd, stop),
                                            expected_sha256=row.expected_sha256,
                                            max_bytes=cfg.iso_max_bytes)
            finally:
                os.close(fd)
            isofiles.remove_staged(cfg.iso_staging_dir, iso_id)
        elif row.source == "local" and row.state == "verifying":
            got = _verify_in_place(cfg.iso_dir, row.name, stop)
        else:
            return
    except isofiles.Stopped:
        log.info("ISO %d (%s): transfer stopped, resumes at the next start", iso_id, row.name)
        return
    except RequestError as exc:
        _fail(ctx, row, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the row must not stay in transfer forever
        log.exception("ISO %d (%s): transfer failed", iso_id, row.name)
        _fail(ctx, row, f"{type(exc).__name__}: {exc}")
        return
    _set(ctx, iso_id, state="ready", size=got.size, received=got.size, sha256=got.sha256,
         kind=got.kind, error=None)
    log.info("ISO %d ready: %s, %d bytes, %s, sha256 %s", iso_id, row.name, got.size,
             got.kind, got.sha256)


def _fail(ctx: Context, row: Iso, error: str) -> None:
    log.warning("ISO %d (%s) failed: %s", row.id, row.name, error)
    if row.source == "upload":  # nothing half-made stays: the upload starts over
        isofiles.remove_staged(ctx.config.front.iso_staging_dir, row.id)
    if row.source == "url":  # the part a resumed download would have continued
        isofiles.remove_part(ctx.config.front.iso_dir, row.id)
    _set(ctx, row.id, state="failed", error=error[:2000])


def _verify_in_place(iso_dir: str, name: str, stop: Callable[[], bool]) -> isofiles.Verified:
    """Checksum and descriptor of a file an operator put into the ISO directory."""

    dir_fd = isofiles.open_dir(iso_dir, trusted=True)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise RequestError(f"{name}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        sha, size, head = isofiles.digest_fd(fd, stop)
    finally:
        os.close(fd)
    return isofiles.Verified(size, sha, isofiles.verify_head(head))


def _start(ctx: Context, iso_id: int) -> None:
    if ctx.transfers is None:
        transfer(ctx, iso_id, lambda: False)
    else:
        ctx.transfers.submit(iso_id)


# -- request handlers ------------------------------------------------------------------

def iso_import(ctx: Context, job: Job) -> dict[str, Any]:
    """A complete upload (the front set it ``verifying``): copy it in, verified."""
    row = _row(ctx, job.args.get("iso_id"))
    if row.source != "upload" or row.state != "verifying":
        raise RequestError(f"ISO {row.id} is not a complete upload (it is {row.state})")
    _start(ctx, row.id)
    return {"iso_id": row.id}


def iso_download(ctx: Context, job: Job) -> dict[str, Any]:
    """A URL registered by an admin: download it in the background, verified."""
    row = _row(ctx, job.args.get("iso_id"))
    if row.source != "url" or row.state != "downloading":
        raise RequestError(f"ISO {row.id} is not a download to start (it is {row.state})")
    isofiles.check_url(row.url)
    _start(ctx, row.id)
    return {"iso_id": row.id}


def users_of(ctx: Context, name: str) -> list[str]:
    with ctx.db.session() as s:
        return list(s.scalars(select(Machine.name).where(Machine.iso == name)
                              .order_by(Machine.name)))


def iso_remove(ctx: Context, job: Job) -> dict[str, Any]:
    """Remove an ISO (its file too) unless a machine uses it or it is in transfer."""
    row = _row(ctx, job.args.get("iso_id"))
    if row.state in ("downloading", "verifying"):
        raise RequestError(f"ISO {row.name!r} is in transfer ({row.state}): wait until it is "
                           "ready or failed")
    used = users_of(ctx, row.name)
    if used:
        raise RequestError(f"ISO {row.name!r} is used by {', '.join(used)}: change their ISO "
                           "or remove them first")
    if row.state == "ready" or row.source == "local":
        if isofmt.name_error(row.name) is None:
            dir_fd = isofiles.open_dir(ctx.config.front.iso_dir, trusted=True)
            try:
                isofiles.unlink_quietly(row.name, dir_fd)
            finally:
                os.close(dir_fd)
    isofiles.remove_staged(ctx.config.front.iso_staging_dir, row.id)
    with ctx.db.session() as s:
        s.execute(Iso.__table__.delete().where(Iso.id == row.id))
    announce(ctx)
    return {"removed": row.name}


def scan(ctx: Context) -> list[int]:
    """Rows (``local``, verified in the background) for ISO files without one."""
    iso_dir = ctx.config.front.iso_dir
    try:
        names = os.listdir(iso_dir)
    except OSError:
        return []
    found: list[int] = []
    with ctx.db.session() as s:
        known = set(s.scalars(select(Iso.name)))
        for name in sorted(names):
            path = os.path.join(iso_dir, name)
            if name in known or isofmt.name_error(name) or not os.path.isfile(path):
                continue
            row = Iso(name=name, state="verifying", source="local",
                      size=os.path.getsize(path))
            s.add(row)
            s.flush()
            found.append(row.id)
    if found:
        announce(ctx)
    return found


def iso_scan(ctx: Context, job: Job) -> dict[str, Any]:
    """Register and verify ISO files an operator put into the ISO directory."""
    found = scan(ctx)
    for iso_id in found:
        _start(ctx, iso_id)
    return {"found": len(found)}


def resume(ctx: Context) -> int:
    """At start: new files registered, interrupted transfers started again."""
    scan(ctx)
    with ctx.db.session() as s:
        ids = list(s.scalars(select(Iso.id).where(Iso.state.in_(("downloading", "verifying")))))
    for iso_id in ids:
        _start(ctx, iso_id)
    return len(ids)


def abandon_deadline(ctx: Context) -> datetime | None:
    """When the oldest unfinished upload counts as abandoned: its last chunk plus
    ``front.iso_upload_abandon_hours`` (the daemon sleeps until then, see back/timers)."""
    with ctx.db.sessionmaker() as s:
        last = s.scalar(select(func.min(Iso.updated_at)).where(*UNFINISHED))
    return None if last is None else last + _abandon_after(ctx)


def _abandon_after(ctx: Context) -> timedelta:
    return timedelta(hours=ctx.config.front.iso_upload_abandon_hours)


def expire_uploads(ctx: Context) -> list[int]:
    """Remove the uploads that got no chunk for ``front.iso_upload_abandon_hours``: the row
    and its staged file. A chunk written meanwhile moved ``updated_at`` and keeps its row
    (the delete is conditional); a chunk after the delete finds no row and no file."""
    cutoff = utcnow() - _abandon_after(ctx)
    gone: list[int] = []
    with ctx.db.session() as s:
        due = list(s.execute(select(Iso.id, Iso.name).where(*UNFINISHED,
                                                            Iso.updated_at <= cutoff)))
        for iso_id, name in due:
            if s.execute(Iso.__table__.delete().where(Iso.id == iso_id, *UNFINISHED,
                                                      Iso.updated_at <= cutoff)).rowcount:
                gone.append(iso_id)
                log.info("ISO upload %d (%s): no chunk for %d h, removed", iso_id, name,
                         ctx.config.front.iso_upload_abandon_hours)
    for iso_id in gone:
        isofiles.remove_staged(ctx.config.front.iso_staging_dir, iso_id)
    if gone:
        announce(ctx)
    return gone


def check_usable(ctx: Context, name: str) -> None:
    """An ISO with a row must be ``ready`` (verified) before a machine boots it."""
    with ctx.db.session() as s:
        state = s.scalar(select(Iso.state).where(Iso.name == name))
    if state is not None and state != "ready":
        raise RequestError(f"ISO {name!r} is not ready (it is {state})")


HANDLERS = {"iso_import": iso_import, "iso_download": iso_download, "iso_remove": iso_remove,
            "iso_scan": iso_scan}
