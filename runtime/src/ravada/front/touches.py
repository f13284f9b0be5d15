"""Bearer tokens' ``last_used_at``, written off the request path: one UPDATE per second.

A token's ``last_used_at`` is refreshed at most once per :data:`TOKEN_TOUCH_SECONDS`.
Written by the request that noticed it, that was a write transaction on the path of a GET
(on MariaDB with ``innodb_flush_log_at_trx_commit=1``, the default, an fsync of the redo
log before the answer), and at a front's start, or after a quiet minute, nearly every API
call's: P4's first seconds at 200 req/s sent 750 UPDATEs, one per token. A request now only
notes the token; one writer thread per process sends what was noted as ONE conditional
UPDATE at most every :data:`FLUSH_SECONDS` (``last_used_at`` is then up to that much late,
and what a killed process had not written yet is lost: it is a hint for the token's owner,
not an audit trail; logins and requests keep their own records).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from datetime import timedelta

from sqlalchemy import update

from ravada.db import ApiToken, Database, utcnow

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
TOKEN_TOUCH_SECONDS = 60  # last_used_at is refreshed at most this often


class Touches:
    """The tokens this process noted as used and has not written yet (one per database)."""

    def __init__(self, db: Database, touch_seconds: float = TOKEN_TOUCH_SECONDS,
                 interval: float = FLUSH_SECONDS) -> None:
        self.db = db
        self.touch_seconds = touch_seconds
        self.interval = interval  # seconds from the first note to the write
        self._pending: set[int] = set()
        self.due = 0.0  # monotonic time of the next write, while something is pending

    def note(self, token_id: int) -> None:
        """``token_id`` was used now: the writer thread writes it within ``interval``."""
        with _lock:
            self._pending.add(token_id)
            if self not in _dirty:
                self.due = time.monotonic() + self.interval
                _dirty.add(self)
            _start_writer()
        _wake.set()

    def flush(self, quiet: bool = False) -> int:
        """Write what was noted now, in one UPDATE; return how many tokens it named."""
        with _lock:
            ids, self._pending = sorted(self._pending), set()
            _dirty.discard(self)
        if not ids:
            return 0
        now = utcnow()
        stale = now - timedelta(seconds=self.touch_seconds)
        try:  # racing workers: the condition keeps it to one write per token
            self.db.write_one(update(ApiToken)
                              .where(ApiToken.id.in_(ids),
                                     ApiToken.last_used_at.is_(None)
                                     | (ApiToken.last_used_at < stale))
                              .values(last_used_at=now))
        except Exception as exc:  # the database is away: a hint is lost, not a request
            log.log(logging.INFO if quiet else logging.WARNING,
                    "last_used_at of %d tokens not written: %s", len(ids), exc)
        return len(ids)


_lock = threading.Lock()
_wake = threading.Event()
_dirty: weakref.WeakSet[Touches] = weakref.WeakSet()  # a front that is gone is not written
_writer_pid = -1


def _start_writer() -> None:
    """The writer thread of this process (a forked worker starts its own); under _lock."""
    global _writer_pid
    if _writer_pid != os.getpid():
        _writer_pid = os.getpid()
        threading.Thread(target=_write_loop, name="ravada-token-touches", daemon=True).start()


def _write_loop() -> None:
    """Asleep while nothing is noted; then each Touches is written when it is due."""
    while True:
        with _lock:
            waiting = list(_dirty)
        now = time.monotonic()
        for touches in [t for t in waiting if t.due <= now]:
            touches.flush()
        with _lock:
            dues = [t.due for t in _dirty]
        _wake.wait(max(0.0, min(dues) - time.monotonic()) if dues else None)
        _wake.clear()


@atexit.register
def _flush_all() -> None:
    """A worker that exits cleanly writes what it noted."""
    with _lock:
        waiting = list(_dirty)
    for touches in waiting:
        touches.flush(quiet=True)
