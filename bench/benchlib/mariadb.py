"""A private MariaDB server on a temporary data dir and socket (Debian's mariadb-server)."""

from __future__ import annotations

import os
import re
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

    def _sql(self, *statements: str) -> None:
        import pymysql

        conn = pymysql.connect(user="root", unix_socket=str(self.sock), ssl_disabled=True)
        with conn.cursor() as cur:
            for st in statements:
                cur.execute(st)
        conn.close()

    def status(self, *names: str) -> dict[str, int]:
        """The server's global counters ``names`` (e.g. ``Connections``) now."""
        import pymysql

        conn = pymysql.connect(user="root", unix_socket=str(self.sock), ssl_disabled=True)
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ("
                        + ",".join(["%s"] * len(names)) + ")", names)
            rows = cur.fetchall()
        conn.close()
        return {k: int(v) for k, v in rows}

    def connect_cost(self, n: int = 20) -> dict[str, dict[str, float]]:
        """What one new connection costs this process (median wall ms and mean CPU ms of
        ``n``): PyMySQL's defaults (it prefers TLS and builds a context per connection),
        and the way ``ravada.db`` connects over a UNIX socket (TLS off, no context)."""
        import statistics

        import pymysql

        out = {}
        for label, extra in (("pymysql_default", {}), ("ravada", {"ssl_disabled": True})):
            walls, cpu0 = [], time.process_time()
            for _ in range(n):
                t = time.perf_counter()
                pymysql.connect(user="root", unix_socket=str(self.sock), **extra).close()
                walls.append(time.perf_counter() - t)
            out[label] = {"wall_ms": round(statistics.median(walls) * 1000, 2),
                          "cpu_ms": round((time.process_time() - cpu0) / n * 1000, 2)}
        return out

    def slow_log(self, on: bool) -> Path:
        """Log every statement with its time (``long_query_time=0``) while ``on``.

        Both settings are copied into a session when it connects: only connections made
        after ``slow_log(True)`` log (the caller restarts the front)."""
        path = self.tmp / "slow.log"
        if on:
            self._sql(f"SET GLOBAL slow_query_log_file='{path}'", "SET GLOBAL long_query_time=0",
                      "SET GLOBAL slow_query_log=1")
        else:
            self._sql("SET GLOBAL slow_query_log=0", "SET GLOBAL long_query_time=10")
        return path

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def summarise_slow_log(path: Path, offset: int = 0, top: int = 15) -> str:
    """Statements of a slow log grouped by shape (literals as ?): count, total, mean, max
    time and rows examined per call, the heaviest first."""
    groups: dict[str, list[float]] = {}
    examined: dict[str, int] = {}
    qtime, rows, sql = 0.0, 0, []

    def flush() -> None:
        text = " ".join(sql).strip()
        if not text or text.upper().startswith(("SET TIMESTAMP", "USE ")):
            return
        shape = re.sub(r"'(?:[^'\\]|\\.)*'|\b\d+\b", "?", text)
        shape = re.sub(r"\s+", " ", shape)[:160]
        groups.setdefault(shape, []).append(qtime)
        examined[shape] = examined.get(shape, 0) + rows

    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("# Query_time:"):
            flush()
            sql = []
            m = re.search(r"Query_time: ([\d.]+).*Rows_examined: (\d+)", line)
            qtime, rows = (float(m.group(1)), int(m.group(2))) if m else (0.0, 0)
        elif line.startswith("#") or line.startswith("SET timestamp") or line.startswith("use "):
            continue
        else:
            sql.append(line)
    flush()
    total = sum(sum(v) for v in groups.values()) or 1.0
    out = [f"{sum(len(v) for v in groups.values())} statements, "
           f"{total * 1000:.1f} ms in the server in all\n",
           f"{'calls':>7} {'total ms':>9} {'share':>6} {'mean ms':>8} {'max ms':>8} "
           f"{'rows/call':>9}  statement"]
    for shape, times in sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]:
        out.append(f"{len(times):>7} {sum(times) * 1000:>9.1f} {sum(times) / total:>6.1%} "
                   f"{sum(times) / len(times) * 1000:>8.3f} {max(times) * 1000:>8.2f} "
                   f"{examined[shape] / len(times):>9.1f}  {shape}")
    return "\n".join(out) + "\n"
