"""The ISO library as the front sees it: rows, uploads in chunks, URL registrations.

The front (the ``ravada`` account) never writes the ISO directory, which is root's: an
upload goes in chunks into ``front.iso_staging_dir`` as ``<id>.part`` (a name of the
row's, never the admin's), each chunk no larger than ``front.max_request_bytes`` (the
body limit Apache shares), written at its offset only when it is the next one expected.
The last chunk queues ``iso_import``: rvd_back copies the file in, verified.
"""

from __future__ import annotations

import os
from typing import IO, Any

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ravada import isofmt, queue, waiters
from ravada.db import Iso, Machine
from ravada.front.dbutil import write_session
from ravada.front.errors import BadInput, Conflict, FrontError, Invalid, NotFound, Unavailable
from ravada.front.state import FrontState, Viewer, iso_time

COPY = 64 * 1024
IN_TRANSFER = ("downloading", "verifying")


class TooLarge(FrontError):
    status, code = 413, "too_large"


def iso_json(row: Iso, users: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "state": row.state, "source": row.source,
            "url": row.url, "size": row.size, "received": row.received,
            "sha256": row.sha256, "expected_sha256": row.expected_sha256, "kind": row.kind,
            "error": row.error, "machines": users, "created_at": iso_time(row.created_at),
            "updated_at": iso_time(row.updated_at)}


def _users(s: Session) -> dict[str, list[dict[str, Any]]]:
    used: dict[str, list[dict[str, Any]]] = {}
    for mid, mname, iso in s.execute(select(Machine.id, Machine.name, Machine.iso)
                                     .where(Machine.iso.is_not(None)).order_by(Machine.name)):
        used.setdefault(iso, []).append({"id": mid, "name": mname})
    return used


def _files(fs: FrontState) -> dict[str, int]:
    """ISO files of the ISO directory (the front may list it, not write it) and sizes."""
    d = fs.config.front.iso_dir
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    out = {}
    for n in names:
        p = os.path.join(d, n)
        if isofmt.name_error(n) is None and os.path.isfile(p):
            out[n] = os.path.getsize(p)
    return out


def library(fs: FrontState) -> list[dict[str, Any]]:
    """Every ISO: rows, and files of the ISO directory no row knows yet (``unverified``)."""
    files = _files(fs)
    with fs.db.sessionmaker() as s:
        used = _users(s)
        rows = list(s.scalars(select(Iso).order_by(Iso.name)))
        out = [iso_json(r, used.get(r.name, [])) for r in rows]
    known = {r["name"] for r in out}
    out += [{"id": None, "name": n, "state": "unverified", "source": "local", "url": None,
             "size": size, "received": size, "sha256": None, "expected_sha256": None,
             "kind": None, "error": None, "machines": used.get(n, []), "created_at": None,
             "updated_at": None}
            for n, size in sorted(files.items()) if n not in known]
    return sorted(out, key=lambda r: r["name"].lower())


def usable(fs: FrontState) -> list[str]:
    """ISO names a new machine may boot: files of the directory, verified when a row has them."""
    files = _files(fs)
    with fs.db.sessionmaker() as s:
        states: dict[str, str] = {n: st for n, st in s.execute(select(Iso.name, Iso.state))}
    return sorted(n for n in files if states.get(n, "ready") == "ready")


def get(fs: FrontState, iso_id: int) -> dict[str, Any]:
    with fs.db.sessionmaker() as s:
        row = s.get(Iso, iso_id)
        if row is None:
            raise NotFound(_("no ISO %(iso_id)s", iso_id=iso_id))
        return iso_json(row, _users(s).get(row.name, []))


def _name(value: Any) -> str:
    if (err := isofmt.name_error(value)) is not None:
        raise Invalid(_("name: %(err)s", err=err))
    return str(value)


def _sha(value: Any, required: bool) -> str | None:
    if value in (None, "") and not required:
        return None
    if (err := isofmt.sha256_error(value)) is not None:
        raise Invalid(_("sha256: %(err)s", err=err))
    return str(value).strip().lower()


def _free_name(fs: FrontState, s: Session, name: str) -> None:
    if s.scalar(select(Iso.id).where(Iso.name == name)) is not None:
        raise Conflict(_("an ISO named %(name)s already exists", name=repr(name)))
    if os.path.lexists(os.path.join(fs.config.front.iso_dir, name)):
        raise Conflict(_("a file named %(name)s is already in the ISO directory", name=repr(name)))


def _add(s: Session, row: Iso) -> None:
    """Insert ``row``; another admin taking the same name at the same moment is a 409."""
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(_("an ISO named %(name)s already exists", name=repr(row.name))) from None


def _announce(fs: FrontState) -> None:
    """Other admins' ISO pages (their long-poll) see a new row or a finished upload at once;
    the chunks in between are not announced (one per MiB would wake them all the time)."""
    waiters.announce(fs.config.queue.socket, [waiters.ISOS])


def _staging_fd(fs: FrontState) -> int:
    path = fs.config.front.iso_staging_dir
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Unavailable(_("the upload directory %(path)s is not usable: %(strerror)s",
                            path=path, strerror=exc.strerror)) from None


def start_upload(fs: FrontState, viewer: Viewer, data: dict[str, Any]) -> dict[str, Any]:
    """A new upload, or the unfinished one of the same name and size (resume)."""
    name = _name(data.get("name"))
    size = data.get("size")
    limit = fs.config.front.iso_max_bytes
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= limit:
        raise Invalid(_("size: an integer from 1 to %(limit)s (front.iso_max_bytes)", limit=limit))
    sha = _sha(data.get("sha256"), required=False)
    with write_session(fs.db) as s:
        row = s.scalar(select(Iso).where(Iso.name == name))
        if row is not None and row.source == "upload" and row.state == "uploading" \
                and row.size == size:
            return {**iso_json(row, []), "chunk_bytes": fs.config.front.max_request_bytes}
        _free_name(fs, s, name)
        row = Iso(name=name, state="uploading", source="upload", size=size, received=0,
                  expected_sha256=sha, user_id=viewer.id)
        _add(s, row)
        dir_fd = _staging_fd(fs)
        try:
            try:
                os.unlink(f"{row.id}.part", dir_fd=dir_fd)  # left by a rolled-back attempt
            except FileNotFoundError:
                pass
            os.close(os.open(f"{row.id}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd))
        finally:
            os.close(dir_fd)
        return {**iso_json(row, []), "chunk_bytes": fs.config.front.max_request_bytes}


def put_chunk(fs: FrontState, viewer: Viewer, iso_id: int, offset: Any, length: int | None,
              body: IO[bytes]) -> dict[str, Any]:
    """Write the next chunk of an upload at ``offset``; 409 with ``received`` otherwise."""
    chunk = fs.config.front.max_request_bytes
    if length is None:
        raise BadInput(_("a chunk needs a Content-Length header"))
    if length > chunk:
        raise TooLarge(_("a chunk is at most %(chunk)s bytes (front.max_request_bytes)",
                         chunk=chunk))
    try:
        at = int(offset)
    except (TypeError, ValueError):
        raise BadInput(_("offset: the byte offset of the chunk, an integer")) from None
    with fs.db.sessionmaker() as s:
        row = s.get(Iso, iso_id)
        if row is None or row.source != "upload":
            raise NotFound(_("no upload %(iso_id)s", iso_id=iso_id))
        if row.state != "uploading":
            raise Conflict(_("upload %(iso_id)s is %(state)s, not uploading",
                             iso_id=iso_id, state=row.state),
                           extra={"state": row.state})
        size, received = row.size, row.received
    if at != received:
        raise Conflict(_("the next chunk starts at byte %(received)s, not %(at)s",
                         received=received, at=at),
                       extra={"received": received})
    if length == 0 or at + length > size:
        raise BadInput(_("a chunk of 1 to %(value)s bytes at %(at)s (the file has %(size)s)",
                         value=min(chunk, size - at), at=at, size=size))
    _write_at(fs, iso_id, at, length, body)
    with write_session(fs.db) as s:
        done = s.execute(update(Iso).where(Iso.id == iso_id, Iso.state == "uploading",
                                           Iso.received == at)
                         .values(received=at + length)).rowcount
        if done != 1:
            now = s.scalar(select(Iso.received).where(Iso.id == iso_id))
            raise Conflict(_("another chunk was written at byte %(at)s",
                             at=at), extra={"received": now})
        complete = at + length == size
        if complete:
            s.execute(update(Iso).where(Iso.id == iso_id).values(state="verifying"))
            queue.enqueue(s, "iso_import", {"iso_id": iso_id}, user_id=viewer.id)
    if complete:
        queue.notify(fs.config.queue.socket)
        _announce(fs)
    return {"id": iso_id, "received": at + length, "size": size,
            "state": "verifying" if complete else "uploading"}


def _write_at(fs: FrontState, iso_id: int, at: int, length: int, body: IO[bytes]) -> None:
    dir_fd = _staging_fd(fs)
    try:
        fd = os.open(f"{iso_id}.part", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError as exc:
        raise Conflict(_("upload %(iso_id)s: its staged file is gone (%(strerror)s); delete it "
                         "and upload again", iso_id=iso_id, strerror=exc.strerror)) from None
    finally:
        os.close(dir_fd)
    try:
        done = 0
        while done < length:
            block = body.read(min(COPY, length - done))
            if not block:
                raise BadInput(_("the body ended after %(done)s of %(length)s bytes",
                                 done=done, length=length))
            os.pwrite(fd, block, at + done)
            done += len(block)
    finally:
        os.close(fd)


def register_url(fs: FrontState, viewer: Viewer, data: dict[str, Any]) -> dict[str, Any]:
    """An ISO rvd_back downloads from ``url`` and keeps only if its SHA-256 matches."""
    name = _name(data.get("name"))
    url = data.get("url")
    if (err := isofmt.url_error(url)) is not None:
        raise Invalid(_("url: %(err)s", err=err))
    sha = _sha(data.get("sha256"), required=True)
    with write_session(fs.db) as s:
        _free_name(fs, s, name)
        row = Iso(name=name, state="downloading", source="url", url=url, size=0, received=0,
                  expected_sha256=sha, user_id=viewer.id)
        _add(s, row)
        req = queue.enqueue(s, "iso_download", {"iso_id": row.id}, user_id=viewer.id)
        out = {**iso_json(row, []), "request_id": req.id}
    queue.notify(fs.config.queue.socket)
    _announce(fs)
    return out


def delete(fs: FrontState, viewer: Viewer, iso_id: int) -> int:
    """Queue the removal of an ISO no machine uses (rvd_back removes its file)."""
    with write_session(fs.db) as s:
        row = s.get(Iso, iso_id)
        if row is None:
            raise NotFound(_("no ISO %(iso_id)s", iso_id=iso_id))
        users = _users(s).get(row.name, [])
        if users:
            raise Conflict(_("%(name)s is used by %(value)s: change their ISO or remove them "
                             "first", name=row.name, value=', '.join(u['name'] for u in users)),
                           extra={"machines": users})
        if row.state in IN_TRANSFER:
            raise Conflict(_("%(name)s is %(state)s: wait until it is ready or failed",
                             name=row.name, state=row.state))
        req = queue.enqueue(s, "iso_remove", {"iso_id": iso_id}, user_id=viewer.id)
        rid = req.id
    queue.notify(fs.config.queue.socket)
    return rid


def scan(fs: FrontState, viewer: Viewer) -> int:
    """Ask rvd_back to register and verify files put into the ISO directory by hand."""
    return queue.submit(fs.db, fs.config.queue.socket, "iso_scan", {}, user_id=viewer.id)
