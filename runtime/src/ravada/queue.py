"""The request queue between rvd_front (or the CLI) and rvd_back.

A request is a row in ``requests``. Writers call :func:`enqueue` and then
:func:`notify`, a datagram to rvd_back's socket that wakes it at once; the
backend's :class:`Waker` falls back to a short poll for writers on other hosts.
:func:`claim` takes one request atomically: two rvd_back processes never get
the same row, and a machine never has two requests working at once.

A request that ran past its deadline is ``failed`` at once (the user is told) but keeps
``finished_at`` empty until its worker thread really returns: until then it still holds its
machine (:data:`HOLDS_MACHINE`), so the next request for that machine cannot run beside it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from typing import Any

from sqlalchemy import and_, func, or_, text, update
from sqlalchemy import select as sql_select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ravada import placement, waiters
from ravada.db import Database, Machine, Request, utcnow

REQUESTED, WORKING, DONE, FAILED = "requested", "working", "done", "failed"
FINAL = (DONE, FAILED)


def enqueue(
    session: Session,
    command: str,
    args: dict[str, Any] | None = None,
    *,
    machine_id: int | None = None,
    user_id: int | None = None,
    timeout: int | None = None,
    node_id: int | None = None,
) -> Request:
    """Add a request row (flushed, so ``.id`` is set; the caller commits).

    Without ``node_id`` the request is routed (:func:`ravada.placement.route`): to its
    machine's node, or placed on one for a new desktop; None lets any backend claim it.
    """
    args = dict(args or {})
    if node_id is None:
        node_id, decision = placement.route(session, command, args, machine_id, user_id)
        if decision is not None:
            args["placement"] = decision
    req = Request(command=command, args=args, machine_id=machine_id, node_id=node_id,
                  user_id=user_id, timeout=timeout, status=REQUESTED, created_at=utcnow())
    session.add(req)
    session.flush()
    return req


def notify(socket_path: str) -> bool:
    """Wake rvd_back. Returns False when no backend listens (it will poll)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(b"!", socket_path)
        return True
    except OSError:
        return False


def submit(db: Database, socket_path: str, command: str, args: dict[str, Any] | None = None,
           **kwargs: Any) -> int:
    """Enqueue in its own transaction, commit, wake the backend; return the id."""
    with db.session() as s:
        req_id = enqueue(s, command, args, **kwargs).id
    notify(socket_path)
    return req_id


class Waker:
    """rvd_back's end of :func:`notify`: a UNIX datagram socket to sleep on."""

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_path)
        os.chmod(socket_path, 0o666)  # a wake-up carries no data: anyone local may ping
        self.sock.setblocking(False)
        self._r, self._w = os.pipe()  # lets another thread interrupt wait()

    def wait(self, timeout: float) -> bool:
        """Sleep until a ping, an interrupt or ``timeout``; True when woken."""
        ready, _, _ = select.select([self.sock, self._r], [], [], timeout)
        for fd in ready:
            if fd is self.sock:
                with contextlib.suppress(BlockingIOError):
                    while data := self.sock.recv(64):
                        if data == waiters.HELLO:
                            waiters.forget_peers()
            else:
                os.read(self._r, 64)
        return bool(ready)

    def interrupt(self) -> None:
        os.write(self._w, b"!")

    def close(self) -> None:
        self.sock.close()
        os.close(self._r)
        os.close(self._w)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _mark_working(session: Session, req_id: int, worker: str) -> None:
    session.execute(
        update(Request).where(Request.id == req_id).values(
            status=WORKING, worker=worker, started_at=utcnow(), attempts=Request.attempts + 1)
    )


# A request holds its machine while it works, and after a timeout until its thread ends.
HOLDS_MACHINE = or_(Request.status == WORKING,
                    and_(Request.status == FAILED, Request.finished_at.is_(None)))

# Clones only read their base: many may run side by side on one base, but never next
# to another request for it (prepare_base, remove_base, ...).
SHARED_COMMAND = "clone"

_SQLITE_CLAIM = text("""
UPDATE requests SET status = 'working', worker = :worker, started_at = :now,
       attempts = attempts + 1
 WHERE id = (SELECT r.id FROM requests r
              WHERE r.status = 'requested'
                AND (:node IS NULL OR r.node_id IS NULL OR r.node_id = :node)
                AND (r.machine_id IS NULL OR (
                     NOT EXISTS (
                       SELECT 1 FROM requests w
                        WHERE (w.status = 'working'
                               OR (w.status = 'failed' AND w.finished_at IS NULL))
                          AND w.machine_id = r.machine_id
                          AND (w.command <> :shared OR r.command <> :shared))
                     AND NOT EXISTS (
                       SELECT 1 FROM requests o
                        WHERE o.status = 'requested' AND o.machine_id = r.machine_id
                          AND o.id < r.id
                          AND (o.command <> :shared OR r.command <> :shared))))
              ORDER BY r.id LIMIT 1)
RETURNING id
""")


def _conflict(a: str, b: str) -> bool:
    """Two requests for one machine must not run together (unless both are clones)."""
    return not (a == SHARED_COMMAND and b == SHARED_COMMAND)


def claim(db: Database, worker: str, node_id: int | None = None) -> int | None:
    """Atomically move the oldest runnable request to ``working``; return its id.

    Runnable: no conflicting request of its machine is working or waiting ahead of it
    (one machine's requests run one at a time and in order; clones of one base run side
    by side). SQLite does it in one UPDATE (writers are serialised by the database
    lock); MariaDB locks the candidate rows with ``FOR UPDATE SKIP LOCKED`` and the
    machine row, so concurrent backends neither share a request nor break that rule.
    ``node_id``: the claimer's node; it takes requests for that node or for any node
    (None: every request, for tools and single-host tests).
    """
    if db.dialect == "sqlite":
        with db.session() as s:
            return s.execute(_SQLITE_CLAIM, {"worker": worker, "now": utcnow(),
                                             "shared": SHARED_COMMAND, "node": node_id}).scalar()
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return _claim_locking(db, worker, node_id)
        except OperationalError as exc:
            code = getattr(exc.orig, "args", [None])[0]
            if code not in (1213, 1205) or attempt == DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))  # InnoDB chose this claim as the victim
    return None


DEADLOCK_RETRIES = 4


def _claim_locking(db: Database, worker: str, node_id: int | None) -> int | None:
    """MariaDB's claim (see :func:`claim`). A clone takes its base's row in share mode:
    clones of one base do not queue behind each other (nor behind the foreign-key checks
    of the clones being inserted), while any other request for the base takes it
    exclusively and so waits for them, as they wait for it."""
    with db.session() as s:
        runnable = sql_select(Request.id, Request.machine_id, Request.command).where(
            Request.status == REQUESTED)
        if node_id is not None:
            runnable = runnable.where(or_(Request.node_id.is_(None), Request.node_id == node_id))
        candidates = s.execute(
            runnable.order_by(Request.id).limit(32).with_for_update(skip_locked=True)).all()
        waiting: dict[int, list[str]] = {}  # machine -> commands of older skipped requests
        for req_id, machine_id, command in candidates:
            if machine_id is not None:
                older = waiting.setdefault(machine_id, [])
                if any(_conflict(o, command) for o in older):
                    older.append(command)  # keep one machine's requests in order
                    continue
                # Serialise claimers of one machine on its row, then look again.
                s.execute(sql_select(Machine.id).where(Machine.id == machine_id)
                          .with_for_update(read=command == SHARED_COMMAND))
                busy = sql_select(func.count()).select_from(Request).where(
                    HOLDS_MACHINE, Request.machine_id == machine_id)
                if command == SHARED_COMMAND:
                    busy = busy.where(Request.command != SHARED_COMMAND)
                if s.execute(busy).scalar():
                    older.append(command)
                    continue
            _mark_working(s, req_id, worker)
            return req_id
    return None


def finish(db: Database, req_id: int, *, result: dict[str, Any] | None = None,
           error: str | None = None, still_running: bool = False,
           wake: str | None = None) -> None:
    """End a working request: ``done`` with a result, or ``failed`` with the error text.

    ``still_running``: the request timed out while its thread still works; it is failed
    now and keeps its machine until :func:`release` (``finished_at`` stays empty).
    ``wake``: the queue socket path; the front processes waiting on it are told at once
    (:mod:`ravada.waiters`).
    """
    with db.session() as s:
        finish_in(s, req_id, result=result, error=error, still_running=still_running)
    if wake:
        announce_end(wake, req_id)


def finish_in(s: Session, req_id: int, *, result: dict[str, Any] | None = None,
              error: str | None = None, still_running: bool = False) -> None:
    """:func:`finish` inside the caller's transaction (its last write: the request ends
    with what it did, in one COMMIT); the caller announces the end after the commit."""
    s.execute(
        update(Request).where(Request.id == req_id, Request.status == WORKING).values(
            status=FAILED if error is not None else DONE,
            error=error, result=result, finished_at=None if still_running else utcnow())
    )


def announce_end(wake: str, req_id: int) -> None:
    """Tell the front processes waiting on ``req_id`` (and the live lists) that it ended."""
    waiters.announce(wake, [req_id, waiters.CHANGED])


def release(db: Database, req_id: int) -> None:
    """The thread of a timed-out request has returned: its machine is free again."""
    with db.session() as s:
        s.execute(update(Request).where(Request.id == req_id, Request.status == FAILED,
                                        Request.finished_at.is_(None))
                  .values(finished_at=utcnow()))


def wait_for(db: Database, req_id: int, timeout: float, interval: float = 0.01,
             wake: str | None = None) -> Request:
    """Wait until a request is done or failed (or ``timeout``); return the row.

    With ``wake`` (the queue socket path) the wait sleeps until the finisher announces the
    end (re-reading the row every :data:`ravada.waiters.FALLBACK` s in case it does not);
    without, it re-reads the row every ``interval`` s (tests, tools).
    """
    deadline = time.monotonic() + timeout
    listener = waiters.listener(wake) if wake else None
    watch = listener.watch(req_id) if listener else contextlib.nullcontext(None)
    with watch as event:
        while True:
            with db.sessionmaker() as s:
                req = s.get(Request, req_id)
                if req is None:
                    raise LookupError(f"no request {req_id}")
                if req.status in FINAL:
                    return req
                left = deadline - time.monotonic()
                if left <= 0:
                    return req
            if event is None:
                time.sleep(min(interval, left))
            else:
                event.wait(min(waiters.FALLBACK, left))
                event.clear()
