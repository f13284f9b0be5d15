"""Engine and session factory for SQLite (default) and MariaDB (PyMySQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from ravada.db import mysql


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


# Connections a process keeps open when it does not say how many threads use the database.
DEFAULT_POOL_SIZE = 5
# A pooled MariaDB connection idle for longer than this is pinged before use (a restarted
# server or a wait_timeout drops it); busy connections are not: a ping per checkout, as
# pool_pre_ping does, is one more round trip on every request of a busy front.
IDLE_PING_SECONDS = 10.0


def _checked_in(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
        return
    try:
        dbapi_conn.ping(False)
    except Exception as exc:  # the pool drops every older connection and connects anew
        raise DisconnectionError(f"stale database connection: {exc}",
                                 invalidate_pool=True) from exc


def make_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE, *, reads: bool = False) -> Engine:
    """Create an engine tuned for the backend in ``url``.

    ``pool_size`` is the number of threads of this process that use the database at once
    (the front's threads per worker, the backend's queue workers and helpers): that many
    connections stay open. The pool may open as many again for a thread that nests a second
    session, but those are closed on return: reopening a MariaDB connection per request
    (handshake, authentication, session variables) is what made the front slow under load.

    ``reads`` (MariaDB): an engine for read-only sessions whose connections stay in
    autocommit, so a read costs its SELECTs and nothing else (no ROLLBACK on return). Under
    READ COMMITTED every statement reads the latest commit anyway.
    """
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, got {pool_size}")
    pool = {"pool_size": pool_size, "max_overflow": pool_size}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        on_disk = bool(parsed.database) and parsed.database != ":memory:"
        if on_disk:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False},
                               **(pool if on_disk else {}))
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, open transactions (SQLAlchemy's documented recipe),
        # so writers can BEGIN IMMEDIATE: a deferred transaction that reads and then writes
        # fails at once with "database is locked" when another writer committed meanwhile.
        event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # READ COMMITTED: the queue's claim re-reads rows other backends just committed.
    options: dict[str, object] = (
        {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True} if reads
        else {"isolation_level": "READ COMMITTED"})
    engine = create_engine(url, pool_recycle=3600, connect_args=mysql.connect_args(parsed),
                           **options, **pool)  # type: ignore[arg-type]
    mysql.share_tls_contexts(engine)
    event.listen(engine.pool, "checkin", _checked_in)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


class Database:
    """Engines and two session factories.

    ``sessionmaker()`` is for reads: deferred transactions on SQLite (readers never wait
    on its write lock), autocommit connections of their own pool on MariaDB.
    ``session()`` is for writes: on SQLite it takes the write lock up front
    (``BEGIN IMMEDIATE``), so it waits its turn through ``busy_timeout`` instead of
    failing; it commits on success. ``pool_size``: threads of this process using it.
    """

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.read_engine = (self.engine if self.engine.dialect.name == "sqlite"
                            else make_engine(url, pool_size, reads=True))
        self.sessionmaker = sessionmaker(self.read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(sqlite_begin="IMMEDIATE"),
                                    expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session that commits on success and rolls back on error."""
        with self._writer() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def warm(self, reads: int, writes: int = 1) -> None:
        """Open ``reads`` pooled connections of the read engine and ``writes`` of the write
        engine now, at a process's start (a forked worker: never before the fork), so that
        the first burst of requests finds them made instead of connecting all at once."""
        plan = ([(self.engine, max(reads, writes))] if self.read_engine is self.engine
                else [(self.read_engine, reads), (self.engine, writes)])
        for engine, n in plan:
            held = [engine.connect() for _ in range(max(0, n))]
            for conn in held:
                conn.close()

    def write_one(self, statement: Executable) -> None:
        """One write statement that is a transaction by itself (a Core UPDATE/DELETE).

        MariaDB: sent on an autocommit connection of the read pool, so it costs its own
        round trip and nothing else (no BEGIN, COMMIT, nor the ROLLBACK of a write
        connection's return). SQLite: a write session (``BEGIN IMMEDIATE``).
        """
        if self.read_engine is self.engine:
            with self.session() as s:
                s.connection().execute(statement)
            return
        with self.read_engine.connect() as conn:
            conn.execute(statement)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
