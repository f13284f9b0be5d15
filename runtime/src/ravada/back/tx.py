"""Read-then-write transactions that do not fail with "database is locked" on SQLite.

SQLite (WAL) cannot upgrade a read transaction to a write one once another
connection has committed since the read began; it fails at once, whatever the
busy timeout. :func:`writing` takes the write lock first (a no-op UPDATE, which
waits for the busy timeout like any writer), then lets the caller read and write.
On MariaDB it is a plain session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from ravada.db import Database

_TAKE_WRITE_LOCK = text("UPDATE backends SET name = name WHERE 1 = 0")


@contextmanager
def writing(db: Database) -> Iterator[Session]:
    """A committing session that holds SQLite's write lock from its first statement."""
    with db.session() as s:
        if db.dialect == "sqlite":
            s.execute(_TAKE_WRITE_LOCK)
        yield s
