"""Shared fixtures: databases (SQLite and a real MariaDB server) and configs.

The MariaDB fixture starts a private ``mariadbd`` on a temporary data dir and
socket (Debian's mariadb-server package must be installed; the test run
installs it). Set ``RAVADA_TEST_MARIADB_URL`` to use an existing server instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvm import kvm_cleanup, kvm_host  # noqa: F401  (defined once here: see kvm.py)
from strict import STRICT_MARKS, STRICT_VAR, strict, unavailable

from ravada import config as rconfig
from ravada.db import Database
from ravada.db.migrate import upgrade

# queue.socket must lie in the runtime directory (ravada.config.check_socket_path); the
# tests keep their sockets in pytest's temporary directories, daemons in subprocesses too.
os.environ.setdefault(rconfig.RUNTIME_DIR_ENV, tempfile.gettempdir())


def pytest_configure(config: pytest.Config) -> None:
    """A private base temporary directory per run unless ``--basetemp`` names one.

    pytest numbers its directories per user and prunes all but the last three: several
    suites on one machine (developers side by side, CI) deleted each other's files
    mid-run. The directory is removed after a run that passed, kept after a failure.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="ravada-tests-")
        config._ravada_private_basetemp = config.option.basetemp  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    private = getattr(config, "_ravada_private_basetemp", None)
    session_ok = getattr(config, "_ravada_session_ok", False)
    if private and session_ok:
        shutil.rmtree(private, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._ravada_session_ok = exitstatus == 0  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In strict mode a skipped kvm/netns/mariadb/browser test is a failure (see strict.py)."""
    outcome = yield
    rep = outcome.get_result()
    if not (strict() and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    if any(item.get_closest_marker(m) for m in STRICT_MARKS):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{STRICT_VAR} is set, so this cannot be skipped: {reason}"


def _start_mariadb(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    datadir, sock = tmp / "data", tmp / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        ["mariadb-install-db", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *user],
        check=True, capture_output=True,
    )
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
         "--skip-networking", f"--pid-file={tmp / 'mysqld.pid'}", "--innodb-buffer-pool-size=64M",
         "--innodb-flush-log-at-trx-commit=2", *user],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "mysqld.err", "wb"),
    )
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("mariadbd did not start: " + (tmp / "mysqld.err").read_text())
        time.sleep(0.1)
    return proc, f"mysql+pymysql://root@localhost/?unix_socket={sock}&charset=utf8mb4"


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL prefix (no database) of a running MariaDB server."""
    url = os.environ.get("RAVADA_TEST_MARIADB_URL")
    if url:
        yield url
        return
    if not shutil.which("mariadbd"):
        unavailable("MariaDB is not installed (apt-get install mariadb-server)")
    proc, url = _start_mariadb(tmp_path_factory.mktemp("mariadb"))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _mariadb_database(server_url: str) -> str:
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(server_url)
    name = "ravada_test_" + uuid.uuid4().hex[:10]
    conn = pymysql.connect(user=u.username, password=u.password or "",
                           unix_socket=u.query.get("unix_socket"), host=u.host or "localhost")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn.close()
    return str(u.set(database=name).render_as_string(hide_password=False))


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: once on SQLite, once on MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ravada.db'}"
    return _mariadb_database(request.getfixturevalue("mariadb_server"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database on both backends."""
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database (tests that need one backend only)."""
    database = Database(f"sqlite:///{tmp_path / 'ravada.db'}")
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> rconfig.Config:
    """A config on the test database, libvirt's test driver and a temp socket."""
    return rconfig.from_dict({
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default"},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"),
                  "iso_dir": str(tmp_path / "isos")},
    })
