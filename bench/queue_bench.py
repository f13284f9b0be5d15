"""P3: the request queue -- pick-up latency and throughput, on SQLite and a real MariaDB.

Pick-up latency: the time from just before ``queue.submit`` (insert + commit + notify)
until a claimer in *another process*, asleep in ``queue.Waker.wait``, has claimed the
row. Requests are sent one at a time with a short gap so the claimer is really asleep
each time. CLOCK_MONOTONIC is shared by all processes of the machine, so the two
timestamps compare directly.

Throughput: one producer process submits ``n`` no-op requests back to back while one
claimer process claims and finishes them: req/s = n / (last finish - first submit).
A drain of a pre-filled backlog (claim + finish only) is reported too.

    .venv/bin/python bench/queue_bench.py [-n 500] [--backends sqlite,mariadb]

Prints the machine, versions and p50/p95/p99 + req/s; writes bench/results/queue.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy

from benchlib import env, results, stats
from benchlib.mariadb import MariaDB
from ravada import queue
from ravada.db import Database
from ravada.db.migrate import upgrade

TARGET_P50_MS = 20.0
TARGET_RPS = 200.0
GAP_S = 0.005  # between latency samples: lets the claimer fall asleep again


def claimer(url: str, sock_path: str, conn: Connection, mode: str) -> None:
    """The rvd_back stand-in: sleep on the Waker, claim, finish, report to the parent.

    ``mode`` "latency": send (id, claimed_at) after each claim; "throughput": send
    (count, last_finished_at) once ``n`` requests (read from the pipe) are finished.
    """
    db = Database(url)
    waker = queue.Waker(sock_path)
    conn.send("ready")
    target = conn.recv() if mode == "throughput" else None
    done = 0
    last = 0.0
    try:
        while True:
            rid = queue.claim(db, "bench")
            if rid is None:
                if conn.poll():  # "stop"
                    break
                waker.wait(1.0)  # the fallback poll only matters when a notify is lost
                continue
            claimed = time.monotonic()
            queue.finish(db, rid, result={})
            done += 1
            last = time.monotonic()
            if mode == "latency":
                conn.send((rid, claimed))
            elif done >= target:
                conn.send((done, last))
                conn.recv()  # wait for "stop"
                break
    finally:
        waker.close()
        db.dispose()


def _start_claimer(url: str, sock: str, mode: str) -> tuple[mp.process.BaseProcess, Connection]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=claimer, args=(url, sock, child, mode), daemon=True)
    proc.start()
    if not parent.poll(60) or parent.recv() != "ready":
        raise RuntimeError("the claimer process did not start")
    return proc, parent


def _stop(proc: mp.process.BaseProcess, conn: Connection, sock: str) -> None:
    conn.send("stop")
    queue.notify(sock)
    proc.join(30)
    if proc.is_alive():
        proc.terminate()


def latency(db: Database, sock: str, n: int) -> list[float]:
    """Submit ``n`` requests one at a time; seconds from submit to claim in the claimer."""
    proc, conn = _start_claimer(db.url, sock, "latency")
    samples = []
    try:
        for _ in range(n):
            time.sleep(GAP_S)
            t0 = time.monotonic()
            rid = queue.submit(db, sock, "noop", {})
            if not conn.poll(10):
                raise RuntimeError(f"request {rid} was not claimed within 10 s")
            got, claimed = conn.recv()
            if got != rid:
                raise RuntimeError(f"claimed {got}, expected {rid}")
            samples.append(claimed - t0)
    finally:
        _stop(proc, conn, sock)
    return samples


def throughput(db: Database, sock: str, n: int) -> dict[str, float]:
    """Stream ``n`` submits while the claimer works; then drain a backlog of ``n``."""
    out: dict[str, float] = {}
    proc, conn = _start_claimer(db.url, sock, "throughput")
    try:
        conn.send(n)
        t0 = time.monotonic()
        for _ in range(n):
            queue.submit(db, sock, "noop", {})
        submitted = time.monotonic()
        if not conn.poll(120):
            raise RuntimeError("the claimer did not finish the stream within 120 s")
        _, last = conn.recv()
        out["stream_rps"] = n / (last - t0)
        out["submit_rps"] = n / (submitted - t0)
    finally:
        _stop(proc, conn, sock)

    with db.session() as s:  # a backlog, then one claimer drains it
        for _ in range(n):
            queue.enqueue(s, "noop", {})
    proc, conn = _start_claimer(db.url, sock, "throughput")
    try:
        t0 = time.monotonic()
        conn.send(n)
        queue.notify(sock)
        if not conn.poll(120):
            raise RuntimeError("the claimer did not drain the backlog within 120 s")
        _, last = conn.recv()
        out["drain_rps"] = n / (last - t0)
    finally:
        _stop(proc, conn, sock)
    return out


def run_backend(name: str, url: str, n: int, tmp: Path) -> dict[str, Any]:
    db = Database(url)
    upgrade(db.engine)
    sock = str(tmp / f"{name}.sock")
    try:
        lat = latency(db, sock, n)
        tp = throughput(db, sock, n)
    finally:
        db.dispose()
    ms = [x * 1000 for x in lat]
    summary = stats.summary(ms, digits=3)
    return {"latency_ms": summary, "throughput": {k: round(v, 1) for k, v in tp.items()},
            "samples_ms": [round(x, 3) for x in ms]}


def mariadb_version(url: str) -> str:
    db = Database(url)
    try:
        with db.engine.connect() as c:
            return str(c.exec_driver_sql("SELECT VERSION()").scalar())
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500, help="requests per measurement (>= 500)")
    ap.add_argument("--backends", default="sqlite,mariadb")
    ap.add_argument("--out-dir", type=Path, default=results.RESULTS_DIR)
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("-n must be positive")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "mariadb"}:
        ap.error("--backends: sqlite and/or mariadb")

    started = results.utc_now()
    extra = {"sqlalchemy": sqlalchemy.__version__, "sqlite": sqlite3.sqlite_version}
    data: dict[str, Any] = {"started": started, "n": args.n, "gap_s": GAP_S, "backends": {}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmpdir:
        tmp = Path(tmpdir)
        server = None
        try:
            for name in backends:
                if name == "sqlite":
                    url = f"sqlite:///{tmp / 'bench.db'}"
                else:
                    (tmp / "mariadb").mkdir()
                    server = MariaDB(tmp / "mariadb")
                    server.start()
                    url = server.url()
                    extra["mariadb"] = mariadb_version(url)
                print(f"[{name}] n={args.n} ...", flush=True)
                res = run_backend(name, url, args.n, tmp)
                data["backends"][name] = res
                lat, tp = res["latency_ms"], res["throughput"]
                rows += [
                    results.row(f"{name}: pick-up p50", lat["median"], "ms",
                                f"<= {TARGET_P50_MS:g} ms", lat["median"] <= TARGET_P50_MS),
                    results.row(f"{name}: pick-up p95", lat["p95"], "ms"),
                    results.row(f"{name}: pick-up p99", lat["p99"], "ms"),
                    results.row(f"{name}: stream submit->finished", tp["stream_rps"], "req/s",
                                f">= {TARGET_RPS:g} req/s", tp["stream_rps"] >= TARGET_RPS),
                    results.row(f"{name}: drain claim+finish", tp["drain_rps"], "req/s",
                                f">= {TARGET_RPS:g} req/s", tp["drain_rps"] >= TARGET_RPS),
                ]
        finally:
            if server:
                server.stop()

    data["env"] = {"machine": env.machine(), "versions": env.versions(None, **extra)}
    data["rows"] = rows
    data["finished"] = results.utc_now()
    print(env.describe(data["env"]))
    print(f"{'metric':40} {'value':>10}  target")
    for r in rows:
        met = {True: "ok", False: "MISSED", None: ""}[r["met"]]
        print(f"{r['metric']:40} {r['value']:>10} {r['unit']:6} {r['target']} {met}")
    path = results.save("queue", data, args.out_dir)
    print(f"wrote {path}")
    if results.README.exists() and args.out_dir == results.RESULTS_DIR:
        try:
            results.render_readme()
        except ValueError as exc:
            print(f"README table not updated: {exc}")
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
