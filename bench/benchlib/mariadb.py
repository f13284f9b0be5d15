"""A private MariaDB server on a temporary data dir and socket (Debian's mariadb-server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path


class MariaDB:
    """``start()`` a throw-away mariadbd under ``tmp``; ``url()`` gives a fresh database."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "mysqld.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        if not shutil.which("mariadbd"):
            raise RuntimeError("mariadbd is not installed (apt-get install mariadb-server)")
        datadir = self.tmp / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", f"--datadir={datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db", *user],
                       check=True, capture_output=True)
        err = open(self.tmp / "mysqld.err", "wb")  # noqa: SIM115 (lives with the server)
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={self.sock}",
             "--skip-networking", f"--pid-file={self.tmp / 'mysqld.pid'}",
             "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
             "--max-connections=500", *user],
            stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mariadbd did not start: "
                                   + (self.tmp / "mysqld.err").read_text(errors="replace"))
            time.sleep(0.05)

    def url(self) -> str:
        """A new empty database on the server, as an SQLAlchemy URL."""
        import pymysql

        name = "ravada_bench_" + uuid.uuid4().hex[:8]
        conn = pymysql.connect(user="root", unix_socket=str(self.sock))
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        conn.close()
        return f"mysql+pymysql://root@localhost/{name}?unix_socket={self.sock}&charset=utf8mb4"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
