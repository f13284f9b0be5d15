"""What a front worker pays at its start, so its first burst of requests does not stall.

Issue 14 (P4 on MariaDB): the measured run at 200 req/s, the first after the front started,
had a p99 of 358 ms while the later rate ladder held 420 req/s. Sampled during those stalls:
each worker growing its pools under the burst, every new PyMySQL connection building a TLS
context (the system's CA bundle parsed, ~24 ms of CPU, 60 ms of wall clock on this machine),
and the first full garbage collections of each worker walking the heap it inherited. These
tests count the mechanisms, not the time.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import event, text, update
from test_front_support import PASSWORD, add_user, make_config

from ravada.db import ApiToken, Database, mysql, utcnow
from ravada.db.migrate import upgrade
from ravada.front import create_app
from ravada.front.server import THREADS_PER_WORKER, prepare_for_fork, warm_worker


class ContextCount:
    """Spy on ``ssl.create_default_context`` (the real one runs): how many were built."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        real = ssl.create_default_context

        def counting(*a: Any, **kw: Any) -> ssl.SSLContext:
            self.n += 1
            return real(*a, **kw)

        monkeypatch.setattr(ssl, "create_default_context", counting)


@pytest.mark.mariadb
def test_a_new_connection_on_the_local_socket_builds_no_tls_context(
        mariadb_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyMySQL prefers TLS and builds a context per connection; over a UNIX socket with no
    TLS option the engine turns TLS off, so growing a pool costs only the connections."""
    from conftest import _mariadb_database

    url = _mariadb_database(mariadb_server)
    spy = ContextCount(monkeypatch)
    db = Database(url, pool_size=4)
    try:
        for engine in (db.read_engine, db.engine):
            held = [engine.connect() for _ in range(4)]
            for c in held:
                assert c.execute(text("SELECT 1")).scalar_one() == 1
                c.close()
    finally:
        db.dispose()
    assert spy.n == 0


def test_tls_options_build_one_context_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL that asks for TLS keeps PyMySQL's TLS rules, but its context is made once."""
    spy = ContextCount(monkeypatch)
    monkeypatch.setattr(mysql, "_contexts", {})
    conn_class = mysql._cached_connection_class()
    opts = {"ca": ssl.get_default_verify_paths().cafile, "check_hostname": False}
    first = conn_class(host="db.invalid", ssl=opts, defer_connect=True)
    second = conn_class(host="db.invalid", ssl=dict(opts), defer_connect=True)
    assert first.ctx is second.ctx and first.ssl and first._ssl_required
    assert spy.n == 1
    assert mysql.connect_args(_url("mysql+pymysql://u@h/db?unix_socket=/s&ssl_ca=/ca")) == {}
    assert mysql.connect_args(_url("mysql+pymysql://u@h/db?unix_socket=/s")) == {
        "ssl_disabled": True}
    assert mysql.connect_args(_url("mysql+pymysql://u@db.example/db")) == {}


def _url(text_url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(text_url)


def test_templates_are_compiled_and_the_heap_frozen_before_the_fork(tmp_path: Path) -> None:
    """The master compiles every template and freezes its heap: the workers' collections
    then skip what they inherited, and no page compiles a template on a request."""
    app = create_app(make_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}"))
    env = app.jinja_env
    compiled: list[str] = []
    real_compile = env.compile

    def spy(source: Any, name: str | None = None, *a: Any, **kw: Any) -> Any:
        compiled.append(str(name))
        return real_compile(source, name, *a, **kw)

    env.compile = spy  # type: ignore[method-assign]
    gc.unfreeze()
    try:
        n = prepare_for_fork(app)
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    pages = [t for t in env.list_templates() if t.endswith(".html")]
    assert n >= len(pages) > 10 and set(pages) <= set(compiled)
    assert frozen > 50_000  # the app's modules, the ORM's mappers, the compiled templates
    compiled.clear()
    with app.test_request_context("/"):
        app.jinja_env.get_template("login.html")
    assert compiled == []  # already compiled: a request renders only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(db: Database) -> dict[str, int]:
    with db.read_engine.connect() as c:
        rows = c.execute(text("SHOW GLOBAL STATUS WHERE Variable_name IN "
                              "('Connections', 'Threads_connected')")).all()
    return {k: int(v) for k, v in rows}


@pytest.fixture
def mariadb_front(tmp_path: Path, mariadb_server: str) -> Iterator[tuple[str, Database, str]]:
    """rvd_front (gunicorn, one worker) on a fresh MariaDB database, and a bearer token."""
    from conftest import _mariadb_database

    url = _mariadb_database(mariadb_server)
    db = Database(url, pool_size=1)
    upgrade(db.engine)
    add_user(db, "ops", admin=True)
    port = _free_port()
    cfg = tmp_path / "ravada.conf"
    cfg.write_text(yaml.safe_dump({
        "database": {"url": url}, "queue": {"socket": str(tmp_path / "q.sock")},
        "front": {"secret_key_file": str(tmp_path / "front.key"), "workers": 1,
                  "listen": f"127.0.0.1:{port}"}}))
    exe = shutil.which("rvd_front", path=str(Path(sys.executable).parent)) or "rvd_front"
    log = open(tmp_path / "front.log", "wb")  # noqa: SIM115 (lives with the server)
    proc = subprocess.Popen([exe, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "RAVADA_RUNTIME_DIR": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:  # the server goes, whatever happens from here on
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/login", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "front.log").read_text()) from None
                time.sleep(0.1)
        body = json.dumps({"name": "ops", "password": PASSWORD}).encode()
        req = urllib.request.Request(base + "/api/v1/tokens", method="POST", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=20) as r:
            token = json.loads(r.read())["token"]
        yield base, db, token
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        db.dispose()


@pytest.mark.mariadb
def test_a_burst_after_the_start_opens_no_database_connection(
        mariadb_front: tuple[str, Database, str]) -> None:
    """gunicorn's worker opens a read connection per thread (and one for writes) at its
    start; a burst of THREADS_PER_WORKER concurrent API calls then connects nothing."""
    base, db, token = mariadb_front
    with db.session() as s:  # a fresh token: no last_used_at write falls in the burst
        s.execute(update(ApiToken).values(last_used_at=utcnow()))
    before = _status(db)
    assert before["Threads_connected"] >= THREADS_PER_WORKER + 2  # the worker's, and ours
    barrier = threading.Barrier(THREADS_PER_WORKER)
    codes: list[int] = []

    def call() -> None:
        barrier.wait()
        req = urllib.request.Request(base + "/api/v1/machines",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=20) as r:
            codes.append(r.status)

    threads = [threading.Thread(target=call) for _ in range(THREADS_PER_WORKER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * THREADS_PER_WORKER
    assert _status(db)["Connections"] - before["Connections"] == 0


def test_warm_worker_opens_a_connection_per_thread(tmp_path: Path, sqlite_db: Database) -> None:
    """On SQLite too (one engine): the pool holds a connection per thread after the start."""
    app = create_app(make_config(tmp_path, sqlite_db.url))
    front_db: Database = app.extensions["ravada"].db
    connects: list[int] = []
    event.listen(front_db.engine, "connect", lambda *_: connects.append(1))
    try:
        warm_worker(app)
        assert len(connects) == THREADS_PER_WORKER
        assert front_db.engine.pool.checkedin() == THREADS_PER_WORKER  # type: ignore[attr-defined]
    finally:
        front_db.dispose()
