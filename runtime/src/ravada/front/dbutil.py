"""Database helpers for the front's read-then-write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from ravada.db import Database


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """A transaction that reads and then writes.

    ``Database.session()`` begins IMMEDIATE on SQLite, so the write lock is taken
    up front and a concurrent commit makes it wait (busy_timeout) instead of
    failing with "database is locked". Reads alone use ``db.sessionmaker()``.
    """
    with db.session() as s:
        yield s
