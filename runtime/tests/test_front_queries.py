"""Database work per API call, counted (statements, round trips, connections), not timed.

Issue 14: a bearer-token API call costs one SELECT for the token and its user, writes only
when ``last_used_at`` is a minute old, reads through pooled connections that are neither
reopened nor pinged nor rolled back per request, and lists bases without a query per base.
These counts do not depend on the machine's load, unlike the P4 benchmark's latencies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text, true, update
from test_front_support import add_machine, add_user, make_config

from ravada.db import ApiToken, Database, Machine, utcnow
from ravada.front import create_app
from ravada.front.accounts import TOKEN_TOUCH_SECONDS, token_hash
from ravada.front.server import THREADS_PER_WORKER
from ravada.front.touches import Touches

TOKEN = "rvd_" + "t" * 40


class Statements:
    """The SQL statements this thread sends through ``db``'s engines, by first keyword."""

    def __init__(self, db: Database) -> None:
        self.sql: list[str] = []
        self._me = threading.get_ident()
        self._engines = {db.engine, db.read_engine}
        for engine in self._engines:
            event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        # SQLite's BEGIN DEFERRED is sent by SQLAlchemy (session.py) but never leaves the
        # process; MariaDB's round trips are checked by the server's counters.
        if threading.get_ident() == self._me and not statement.startswith("BEGIN"):
            self.sql.append(statement)

    def kinds(self) -> list[str]:
        return [s.split(None, 1)[0].upper() for s in self.sql]

    def writes(self) -> list[str]:
        return [s for s in self.sql if s.split(None, 1)[0].upper() in
                ("INSERT", "UPDATE", "DELETE", "REPLACE")]

    def close(self) -> None:
        for engine in self._engines:
            event.remove(engine, "before_cursor_execute", self._on)


class ServerCounters:
    """MariaDB's own counters: what reached the server, whoever sent it."""

    NAMES = ("Com_select", "Com_update", "Com_rollback", "Com_commit", "Com_admin_commands",
             "Connections")

    def __init__(self, db: Database) -> None:
        self.engine = db.read_engine  # autocommit: the SHOW adds no ROLLBACK

    def read(self) -> dict[str, int]:
        names = ", ".join(f"'{n}'" for n in self.NAMES)
        with self.engine.connect() as c:
            rows = c.execute(text(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")).all()
        return {name: int(value) for name, value in rows}


@pytest.fixture
def app_db(tmp_path: Path, db: Database) -> Iterator[tuple[FlaskClient, Database, int]]:
    """The front on ``db`` (SQLite and MariaDB) with one user, machines and a bearer token."""
    uid = add_user(db, "alice")
    add_user(db, "admin", admin=True)
    for i in range(3):
        add_machine(db, f"desk-alice-{i}", uid)
    with db.session() as s:
        s.add(ApiToken(user_id=uid, name="bench", token_hash=token_hash(TOKEN)))
    app = create_app(make_config(tmp_path, db.url))
    front_db = app.extensions["ravada"].db
    app.extensions["ravada"].touches.interval = 3600  # the tests flush by hand
    yield app.test_client(), front_db, uid
    front_db.dispose()


def _get(client: FlaskClient, path: str) -> Any:
    resp = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return resp.json


def test_token_call_is_one_select_and_no_write(app_db: tuple[FlaskClient, Database, int]
                                               ) -> None:
    client, db, _ = app_db
    _get(client, "/api/v1/machines")  # first use: connects, notes last_used_at
    server = ServerCounters(db) if db.dialect != "sqlite" else None
    before = server.read() if server else {}
    stmts = Statements(db)
    try:
        listed = _get(client, "/api/v1/machines")
    finally:
        stmts.close()
    assert [m["name"] for m in listed] == [f"desk-alice-{i}" for i in range(3)]
    # one SELECT authenticates (token joined to its user), one lists: nothing else
    assert stmts.kinds() == ["SELECT", "SELECT"], stmts.sql
    assert "JOIN users" in stmts.sql[0] and "api_tokens" in stmts.sql[0]
    if server:
        after = server.read()
        delta = {k: after[k] - before[k] for k in ServerCounters.NAMES}
        # what reached MariaDB: the two SELECTs; no ping, no ROLLBACK/COMMIT, no new
        # connection (the counters' own SHOW is neither of these)
        assert delta == {"Com_select": 2, "Com_update": 0, "Com_rollback": 0, "Com_commit": 0,
                         "Com_admin_commands": 0, "Connections": 0}, delta


def _touches(client: FlaskClient) -> Touches:
    return client.application.extensions["ravada"].touches


def test_last_used_at_is_noted_at_most_once_a_minute_and_never_written_by_the_request(
        app_db: tuple[FlaskClient, Database, int]) -> None:
    """The request that finds its token's last_used_at a minute old notes it and writes
    nothing; the process's writer sends the UPDATE (here: flushed by hand)."""
    client, db, _ = app_db
    touches = _touches(client)
    stmts = Statements(db)
    try:
        _get(client, "/api/v1/machines")
        on_request = stmts.writes()
        stmts.sql.clear()
        noted = touches.flush()
        flushed = stmts.writes()
        for _ in range(3):
            _get(client, "/api/v1/machines")
        again = touches.flush()
        with db.session() as s:  # a minute later (not counted: another thread's view)
            stale = utcnow() - timedelta(seconds=TOKEN_TOUCH_SECONDS + 1)
            s.execute(update(ApiToken).values(last_used_at=stale))
        stmts.sql.clear()
        _get(client, "/api/v1/machines")
        later_on_request = stmts.writes()
        later = touches.flush()
    finally:
        stmts.close()
    assert on_request == [] and later_on_request == [], (on_request, later_on_request)
    assert noted == 1 and len(flushed) == 1 and flushed[0].startswith("UPDATE api_tokens")
    assert again == 0 and later == 1
    with db.sessionmaker() as s:
        touched = s.scalar(select(ApiToken.last_used_at))
    assert touched is not None and utcnow() - touched < timedelta(seconds=30)


def test_the_touches_of_many_tokens_are_one_update_on_the_wire(
        app_db: tuple[FlaskClient, Database, int]) -> None:
    """Three users' first calls in a minute: no write on their requests; ONE UPDATE for the
    three tokens (on MariaDB: one autocommit statement, no COMMIT, no ROLLBACK)."""
    client, db, _ = app_db
    tokens = [TOKEN]
    for i in range(2):
        uid = add_user(db, f"bob{i}")
        tokens.append("rvd_" + f"{i}" * 40)
        with db.session() as s:
            s.add(ApiToken(user_id=uid, name="t", token_hash=token_hash(tokens[-1])))
    _get(client, "/api/v1/machines")  # connects the pools
    _touches(client).flush()
    with db.session() as s:
        s.execute(update(ApiToken).values(last_used_at=None))
    server = ServerCounters(db) if db.dialect != "sqlite" else None
    before = server.read() if server else {}
    stmts = Statements(db)
    try:
        for token in tokens:
            resp = client.get("/api/v1/machines", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 200
        on_requests = stmts.kinds()
        noted = _touches(client).flush()
    finally:
        stmts.close()
    assert on_requests == ["SELECT", "SELECT"] * 3, stmts.sql
    assert noted == 3 and stmts.kinds()[6:] == ["UPDATE"], stmts.sql
    if server:
        after = server.read()
        delta = {k: after[k] - before[k] for k in ServerCounters.NAMES}
        assert delta == {"Com_select": 6, "Com_update": 1, "Com_rollback": 0, "Com_commit": 0,
                         "Com_admin_commands": 0, "Connections": 0}, delta
    with db.sessionmaker() as s:
        assert s.scalar(select(func.count()).where(ApiToken.last_used_at.is_not(None))) == 3


def test_the_writer_thread_writes_the_noted_tokens_by_itself(
        app_db: tuple[FlaskClient, Database, int]) -> None:
    client, db, _ = app_db
    _touches(client).interval = 0.1
    _get(client, "/api/v1/machines")
    deadline = time.monotonic() + 10
    while True:
        with db.sessionmaker() as s:
            if s.scalar(select(ApiToken.last_used_at)) is not None:
                break
        assert time.monotonic() < deadline, "the writer thread wrote nothing"
        time.sleep(0.05)


def test_disabled_users_token_is_refused_in_the_same_select(
        app_db: tuple[FlaskClient, Database, int]) -> None:
    client, db, uid = app_db
    _get(client, "/api/v1/machines")
    with db.session() as s:
        s.execute(text("UPDATE users SET is_disabled = :t WHERE id = :id"),
                  {"t": True, "id": uid})
    stmts = Statements(db)
    try:
        resp = client.get("/api/v1/machines", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        stmts.close()
    assert resp.status_code == 401
    assert stmts.kinds() == ["SELECT"], stmts.sql


def test_bases_list_costs_the_same_queries_for_one_base_or_many(
        app_db: tuple[FlaskClient, Database, int]) -> None:
    client, db, uid = app_db
    admin = db_admin(db)
    _get(client, "/api/v1/machines")  # the token's first use (last_used_at) is not counted

    def count() -> int:
        stmts = Statements(db)
        try:
            bases = _get(client, "/api/v1/bases")
        finally:
            stmts.close()
        assert all("clone" in b and "pending_request" in b for b in bases)
        return len(stmts.sql)

    base = add_machine(db, "base-0", admin, is_base=True, is_public=True)
    add_machine(db, "base-0-alice", uid, base_id=base)
    one = count()
    for i in range(1, 6):
        b = add_machine(db, f"base-{i}", admin, is_base=True, is_public=True)
        add_machine(db, f"base-{i}-alice", uid, base_id=b)
    many = count()
    assert one == many <= 4  # auth + bases + clones + pending requests


def db_admin(db: Database) -> int:
    with db.sessionmaker() as s:
        return int(s.execute(text("SELECT id FROM users WHERE name = 'admin'")).scalar_one())


def test_front_pool_holds_a_connection_per_thread(tmp_path: Path, db: Database) -> None:
    """Every gunicorn thread of a worker keeps its connection: none is reopened per request."""
    app = create_app(make_config(tmp_path, db.url))
    front_db: Database = app.extensions["ravada"].db
    if db.dialect == "sqlite":  # one engine; the pool size is what matters
        assert front_db.engine.pool.size() == THREADS_PER_WORKER  # type: ignore[attr-defined]
        return
    connects: list[int] = []
    event.listen(front_db.read_engine, "connect", lambda *_: connects.append(1))
    try:
        for _ in range(3):  # all threads busy at once, three times over
            sessions = [front_db.sessionmaker() for _ in range(THREADS_PER_WORKER)]
            for s in sessions:
                s.execute(text("SELECT 1"))
            for s in sessions:
                s.close()
    finally:
        front_db.dispose()
    assert len(connects) == THREADS_PER_WORKER


@pytest.fixture
def mariadb_db(mariadb_server: str) -> Iterator[Database]:
    from conftest import _mariadb_database

    from ravada.db.migrate import upgrade

    database = Database(_mariadb_database(mariadb_server))
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.mark.mariadb
def test_hot_queries_use_indexes(mariadb_db: Database) -> None:
    """EXPLAIN on MariaDB: the bases list is an index lookup, not a scan and a sort."""
    db = mariadb_db
    admin = add_user(db, "admin")
    with db.session() as s:
        s.execute(Machine.__table__.insert(), [
            {"name": f"m{i:04d}", "owner_id": admin, "is_base": i % 200 == 0,
             "is_public": True, "state": "shutdown", "memory_mb": 1024, "vcpus": 1,
             "disk_gb": 1, "description": "", "created_at": utcnow(), "updated_at": utcnow()}
            for i in range(1000)])
    q = (select(Machine).where(Machine.is_base == true(), Machine.is_public == true())
         .order_by(Machine.name))
    sql = str(q.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as c:
        c.execute(text("ANALYZE TABLE machines"))
        plan = c.execute(text("EXPLAIN " + sql)).mappings().all()
    assert [(p["type"], p["key"]) for p in plan] == [("ref", "ix_machines_is_base_name")], plan
    assert "filesort" not in (plan[0]["Extra"] or ""), plan
