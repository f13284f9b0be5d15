"""Database helpers for the front's read-then-write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from ravada.db import Database

# Touches no row but makes SQLite take its write lock now (like BEGIN IMMEDIATE).
_TAKE_WRITE_LOCK = text("UPDATE settings SET value = value WHERE 1 = 0")


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """A transaction that will write after reading.

    On SQLite (WAL) a transaction that read first and then writes fails at once
    with "database is locked" when another connection committed in between; the
    busy timeout does not help. Taking the write lock first makes it wait instead.
    MariaDB needs nothing special.
    """
    with db.session() as s:
        if db.dialect == "sqlite":
            s.execute(_TAKE_WRITE_LOCK)
        yield s
