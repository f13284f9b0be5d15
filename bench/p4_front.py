#!/usr/bin/env python3
"""P4: rvd_front under load -- the mix of a working day: pages, lists, API, long-polls.

For each database (SQLite, and a private MariaDB server): seed 1,000 users x 5 machines,
start ``rvd_front`` (gunicorn, the configured workers) on loopback, then run the open-loop
load generator (``benchlib.loadgen``) in a second process. The mix (:data:`MIX`, each entry
as another user): user pages with the user's session cookie (the desktop list ``/`` and a
desktop's page), machine lists and request status through the API with the user's bearer
token, and long-polls (``GET /api/v1/requests/<id>?wait=1`` on a click still pending, held
by the front for the whole second; they count in the rate and the errors, and their
lateness beyond the second is reported apart from the p99 of the others):

1. warm-up, then the target rate (default 200 req/s) for ``--duration`` seconds;
2. a baseline in the same run: ``/healthz`` at the same rate (the floor of this server);
3. a rate ladder, then a bisection, for the highest rate whose p99 stays <= 100 ms with no
   errors;
4. when the target is missed, a py-spy profile of the front during a run at the target rate.

Run with the runtime's Python (``.venv/bin/python bench/p4_front.py``); results go to
``bench/results/p4_front.json`` and the table in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib import env as benv  # noqa: E402
from benchlib import profile, results  # noqa: E402
from benchlib.mariadb import MariaDB, summarise_slow_log  # noqa: E402
from benchlib.seed import seed  # noqa: E402
from benchlib.stats import ratio  # noqa: E402

# One cycle of the mix, 20 requests: 4 user pages (20 %), 8 machine lists (40 %),
# 7 request status (35 %), 1 long-poll (5 %). Each entry goes as the next user.
MIX = ("api-machines", "api-request", "page-index", "api-machines", "api-request",
       "api-bases", "api-request", "page-machine", "api-machines", "api-request",
       "long-poll", "api-machines", "api-request", "page-index", "api-machines",
       "api-request", "api-bases", "api-request", "page-machine", "api-machines")
LONG_POLL_S = 1


def session_cookies(key_file: Path, logins: list[Any]) -> dict[int, str]:
    """A signed session cookie per user, as rvd_front's login would set it (a fixture:
    1,000 argon2 logins would take minutes and trip the login throttle)."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    app = Flask("bench-cookies")
    app.secret_key = key_file.read_text(encoding="ascii").strip()
    ser = SecureCookieSessionInterface().get_signing_serializer(app)
    assert ser is not None
    now = int(time.time())
    return {u.uid: ser.dumps({"_permanent": True, "uid": u.uid, "sv": 0, "since": now,
                              "seen": now}) for u in logins}


def build_plan(logins: list[Any], cookies: dict[int, str]) -> list[dict[str, Any]]:
    """The request plan: :data:`MIX` over and over, each entry as the next user."""
    plan = []
    for i, u in enumerate(logins * 2):  # 2,000 entries: every kind meets many users
        kind = MIX[i % len(MIX)]
        bearer = {"Authorization": f"Bearer {u.token}"}
        cookie = {"Cookie": f"ravada_session={cookies[u.uid]}"}
        entry: dict[str, Any] = {"kind": kind}
        if kind == "api-machines":
            entry.update(path="/api/v1/machines", headers=bearer)
        elif kind == "api-bases":
            entry.update(path="/api/v1/bases", headers=bearer)
        elif kind == "api-request":
            entry.update(path=f"/api/v1/requests/{u.requests[i % len(u.requests)]}",
                         headers=bearer)
        elif kind == "long-poll":
            entry.update(path=f"/api/v1/requests/{u.pending}?wait={LONG_POLL_S}",
                         headers=bearer, hold_s=LONG_POLL_S)
        elif kind == "page-index":
            entry.update(path="/", headers=cookie)
        else:
            entry.update(path=f"/machine/{u.machines[i % len(u.machines)]}", headers=cookie)
        plan.append(entry)
    return plan


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None, timeout: float = 5,
        headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Front:
    """rvd_front on 127.0.0.1:<free port> with a config file of its own."""

    def __init__(self, tmp: Path, db_url: str, workers: int, cmd: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "ravada.conf"
        self.key_file = tmp / "front.key"
        self.config.write_text(json.dumps({  # JSON is YAML
            "log_level": "WARNING",
            "database": {"url": db_url},
            "libvirt": {"uri": "test:///default"},
            "queue": {"socket": str(tmp / "queue.sock")},
            "firewall": {"enabled": False},
            "front": {"listen": f"127.0.0.1:{self.port}", "workers": workers,
                      "secret_key_file": str(tmp / "front.key"), "iso_dir": str(tmp)},
        }), encoding="utf-8")
        self.cmd = [*cmd, "--config", str(self.config)]
        self.log = tmp / "front.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        # queue.socket must be inside the runtime directory: this front's own tmp dir
        envv = {**os.environ, "RAVADA_CONFIG": str(self.config),
                "RAVADA_RUNTIME_DIR": str(self.config.parent)}
        self.proc = subprocess.Popen(self.cmd, env=envv, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rvd_front exited ({self.proc.returncode}):\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            try:
                get(self.url + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"rvd_front did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def default_front_cmd(workers: int) -> tuple[list[str], str]:
    """``rvd_front`` when the package has its server module, else gunicorn on the app."""
    import importlib.util

    bindir = Path(sys.executable).parent
    if importlib.util.find_spec("ravada.front.server") is not None:
        return [str(bindir / "rvd_front")], "rvd_front"
    shim = ("import json,os,subprocess,sys;c=json.load(open(os.environ['RAVADA_CONFIG']));"
            "os.execv(sys.argv[1],[sys.argv[1],'-w',str(c['front']['workers']),'-b',"
            "c['front']['listen'],'--chdir',sys.argv[2],'benchlib.front_wsgi:app'])")
    return ([sys.executable, "-c", shim, str(bindir / "gunicorn"), str(BENCH)],
            f"gunicorn sync x{workers} on create_app (ravada.front.server missing)")


def loadgen(url: str, plan: Path, rate: float, duration: float, tmp: Path) -> dict[str, Any]:
    """Run the generator in its own process; return its result."""
    out = tmp / f"load-{rate:.0f}-{time.monotonic_ns()}.json"
    subprocess.run([sys.executable, "-m", "benchlib.loadgen", "--url", url, "--plan", str(plan),
                    "--rate", str(rate), "--duration", str(duration), "--out", str(out)],
                   cwd=BENCH, check=True)
    return json.loads(out.read_text())


def meets(r: dict[str, Any], p99_ms: float) -> bool:
    """No errors, p99 within the target, the rate served, and long-polls answered within
    ``p99_ms`` of their hold at the 99th percentile."""
    late = r.get("long_poll_overshoot_ms", {}).get("p99", 0)
    return (r["errors"] == 0 and r["latency_ms"]["p99"] <= p99_ms and late <= p99_ms
            and r["achieved_rps"] >= 0.95 * r["rate_target"])


def line(label: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (f"  {label:<22} {r['rate_target']:>6.0f} req/s -> {r['achieved_rps']:>6.1f} "
            f"p50 {lat['median']:>7.1f} ms  p95 {lat['p95']:>7.1f}  p99 {lat['p99']:>7.1f}  "
            f"errors {r['errors']}")


def find_max_rate(url: str, plan: Path, tmp: Path, args: argparse.Namespace,
                  steps: list[dict[str, Any]]) -> float | None:
    """Ladder up until p99 or errors fail, then bisect; return the best passing rate."""
    good, bad = None, None
    rate = args.ladder_start
    while rate <= args.max_rate:
        r = loadgen(url, plan, rate, args.step_duration, tmp)
        steps.append(r)
        print(line("ladder", r), flush=True)
        if meets(r, args.p99_ms):
            good, rate = rate, rate * 1.5
        else:
            bad = rate
            break
    if good is None or bad is None:
        return good
    for _ in range(args.bisect):
        mid = round((good + bad) / 2, -1)
        if mid in (good, bad):
            break
        r = loadgen(url, plan, mid, args.step_duration, tmp)
        steps.append(r)
        print(line("bisect", r), flush=True)
        if meets(r, args.p99_ms):
            good = mid
        else:
            bad = mid
    return good


def run_one(kind: str, db_url: str, tmp: Path, args: argparse.Namespace,
            mdb: MariaDB | None = None) -> dict[str, Any]:
    from ravada.db import Database

    db = Database(db_url)
    t0 = time.perf_counter()
    seeded = seed(db, users=args.users, per_user=args.machines)
    db.dispose()
    print(f"[{kind}] seeded {seeded.users} users, {seeded.machines} machines, "
          f"{seeded.requests} requests in {time.perf_counter() - t0:.1f} s", flush=True)
    plan_file = tmp / "plan.json"
    health_file = tmp / "health.json"
    # any answer counts: /healthz says 503 when no rvd_back heartbeats, as here
    health_file.write_text(json.dumps([{"kind": "healthz", "path": "/healthz",
                                        "ok_status": [200, 503]}]))

    front = Front(tmp, db_url, args.workers, args.front_cmd)
    front.start()
    try:
        plan = build_plan(seeded.logins, session_cookies(front.key_file, seeded.logins))
        plan_file.write_text(json.dumps(plan))
        for entry in plan[:len(MIX)]:
            status, body = get(front.url + entry["path"], headers=entry["headers"])
            if status != 200 or (entry["kind"].startswith("page")
                                   and 'action="/login"' in body):
                raise RuntimeError(f"GET {entry['path']} ({entry['kind']}) as a seeded user "
                                   f"gave {status}: {body[:300]}")
        loadgen(front.url, plan_file, args.rate / 4, 5, tmp)  # warm-up
        counters = ("Connections", "Com_update", "Com_commit")
        server_before = mdb.status(*counters) if mdb else {}
        at_target = loadgen(front.url, plan_file, args.rate, args.duration, tmp)
        if mdb:  # what reached the server during the measured run
            after = mdb.status(*counters)
            at_target["server"] = {k: after[k] - server_before[k] for k in counters}
            at_target["server"]["Connections"] -= 1  # the one that read the counters
        print(line(f"{kind} target", at_target), flush=True)
        baseline = loadgen(front.url, health_file, args.rate, args.duration, tmp)
        print(line(f"{kind} /healthz", baseline), flush=True)
        steps: list[dict[str, Any]] = []
        max_rate = find_max_rate(front.url, plan_file, tmp, args, steps)
        print(f"  [{kind}] highest rate with p99 <= {args.p99_ms} ms: {max_rate} req/s",
              flush=True)
        prof = None
        if not meets(at_target, args.p99_ms) or args.profile:
            if mdb:  # new connections log every statement: restart the front, warm it
                mdb.slow_log(True)
                front.stop()
                front.start()
                loadgen(front.url, plan_file, args.rate / 4, 5, tmp)
            prof = profile_run(front, plan_file, tmp, args, kind, mdb)
    finally:
        front.stop()
    log_tail = front.log.read_text(errors="replace")[-4000:]
    if at_target["errors"] and "Traceback" in log_tail:
        print(f"  [{kind}] rvd_front log (tail):\n{log_tail[-1500:]}")
    return {"db": kind, "connect_cost": mdb.connect_cost() if mdb else None,
            "seeded": {"users": seeded.users, "machines": seeded.machines,
                                   "requests": seeded.requests},
            "front_log_tail": log_tail, "server": args.server,
            "at_target": at_target, "baseline_healthz": baseline, "ladder": steps,
            "max_rate_p99_ok": max_rate, "profile": prof}


def profile_run(front: Front, plan: Path, tmp: Path, args: argparse.Namespace,
                kind: str, mdb: MariaDB | None = None) -> str | None:
    """py-spy over the front while the generator runs at the target rate; on MariaDB the
    server's slow log (every statement, ``long_query_time=0``) during the same run."""
    assert front.proc is not None
    raw = tmp / "profile.raw"
    try:
        spy = profile.record(front.proc.pid, args.duration, raw)
    except RuntimeError as exc:
        print(f"  no profile: {exc}")
        return None
    log = mdb.slow_log(True) if mdb else None
    offset = log.stat().st_size if log and log.exists() else 0
    try:
        r = loadgen(front.url, plan, args.rate, args.duration, tmp)
    finally:
        if mdb:
            mdb.slow_log(False)
    print(line(f"{kind} profiled", r), flush=True)
    if mdb and log and log.exists():
        (results.RESULTS_DIR / f"p4_profile_slowlog_{kind}.txt").write_text(
            f"MariaDB slow log (every statement) of the profiled run at {args.rate} req/s\n\n"
            + summarise_slow_log(log, offset), encoding="utf-8")
    _, err = spy.communicate(timeout=args.duration + 30)
    if not raw.exists():
        print(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")
        return None
    out = results.RESULTS_DIR / f"p4_profile_{kind}.txt"
    out.write_text(f"py-spy of rvd_front ({kind}) at {args.rate} req/s\n\n"
                   + profile.summarise(raw), encoding="utf-8")
    return str(out.relative_to(BENCH))


def connect_cost_only(n: int = 50) -> int:
    """One new connection to a private MariaDB over its UNIX socket, ``n`` times each way:
    PyMySQL's defaults (TLS preferred: an SSL context built per connection) and the way
    ``ravada.db``'s engines connect (TLS off on a local socket, no context)."""
    started = results.utc_now()
    envd = {"machine": benv.machine(), "versions": benv.versions(libvirt_uri=None)}
    with tempfile.TemporaryDirectory(prefix="ravada-p4c-") as tmpdir:
        mdb = MariaDB(Path(tmpdir))
        mdb.start()
        try:
            mdb.connect_cost(5)  # warm: imports, the server's first sessions
            cost = mdb.connect_cost(n)
        finally:
            mdb.stop()
    d, r = cost["pymysql_default"], cost["ravada"]
    rows = [results.row("PyMySQL's defaults: wall median / CPU mean",
                        f"{d['wall_ms']:.2f} / {d['cpu_ms']:.2f}", "ms"),
            results.row("ravada's engines (TLS off on the socket): wall median / CPU mean",
                        f"{r['wall_ms']:.2f} / {r['cpu_ms']:.2f}", "ms"),
            results.row("ratio of the walls", ratio(d["wall_ms"], r["wall_ms"])),
            results.row("connections of each kind", n)]
    data = {"benchmark": "p4_connect", "started": started, "finished": results.utc_now(),
            "env": envd, "params": {"n": n}, "cost": cost, "rows": rows}
    path = results.save("p4_connect", data)
    results.render_readme()
    print("\n".join(f"{x['metric']}: {x['value']} {x['unit']}" for x in rows)
          + f"\nresults: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", default="sqlite,mariadb", help="sqlite, mariadb or both (comma)")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--machines", type=int, default=5, help="machines per user")
    p.add_argument("--rate", type=float, default=200, help="target rate, req/s")
    p.add_argument("--p99-ms", type=float, default=100)
    p.add_argument("--duration", type=float, default=30, help="seconds at the target rate")
    p.add_argument("--step-duration", type=float, default=15, help="seconds per ladder step")
    p.add_argument("--ladder-start", type=float, default=100)
    p.add_argument("--max-rate", type=float, default=3000)
    p.add_argument("--bisect", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="front.workers (gunicorn)")
    p.add_argument("--front-cmd", type=lambda s: s.split(), default=None,
                   help="command that starts rvd_front (default: rvd_front of this Python, "
                   "or gunicorn on benchlib.front_wsgi while ravada.front.server is missing)")
    p.add_argument("--profile", action="store_true", help="profile even when the target is met")
    p.add_argument("--connect-cost", action="store_true",
                   help="only measure what one new MariaDB connection costs (p4_connect.json)")
    args = p.parse_args(argv)
    if args.connect_cost:
        return connect_cost_only()
    if args.front_cmd is None:
        args.front_cmd, args.server = default_front_cmd(args.workers)
    else:
        args.server = " ".join(args.front_cmd)

    started = results.utc_now()
    envd = {"machine": benv.machine(), "versions": benv.versions(libvirt_uri=None)}
    print(benv.describe(envd), flush=True)
    runs = []
    mdb = None
    with tempfile.TemporaryDirectory(prefix="ravada-p4-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
                sub = tmp / kind
                sub.mkdir()
                if kind == "sqlite":
                    url = f"sqlite:///{sub / 'ravada.db'}"
                elif kind == "mariadb":
                    mdb = mdb or MariaDB(tmp / "mariadb-server")
                    if mdb.proc is None:
                        (tmp / "mariadb-server").mkdir()
                        mdb.start()
                    url = mdb.url()
                else:
                    raise SystemExit(f"--db: unknown database {kind!r} (sqlite, mariadb)")
                runs.append(run_one(kind, url, sub, args, mdb if kind == "mariadb" else None))
        finally:
            if mdb:
                mdb.stop()

    rows = []
    for r in runs:
        t, b = r["at_target"], r["baseline_healthz"]
        ok = meets(t, args.p99_ms)
        rows += [
            results.row(f"[{r['db']}] p99 at {args.rate:.0f} req/s", t["latency_ms"]["p99"], "ms",
                        f"<= {args.p99_ms:.0f} ms", ok),
            results.row(f"[{r['db']}] p50 / p95 at {args.rate:.0f} req/s",
                        f"{t['latency_ms']['median']:.1f} / {t['latency_ms']['p95']:.1f}", "ms"),
            results.row(f"[{r['db']}] errors / achieved rate",
                        f"{t['errors']} / {t['achieved_rps']}", "req/s"),
            results.row(f"[{r['db']}] long-polls / p99 late beyond their {LONG_POLL_S} s",
                        f"{t.get('long_polls', 0)} / "
                        f"{t.get('long_poll_overshoot_ms', {}).get('p99', 0):.1f}", "ms"),
            results.row(f"[{r['db']}] median ratio vs /healthz (same run)",
                        ratio(t["latency_ms"]["median"], b["latency_ms"]["median"])),
            results.row(f"[{r['db']}] highest rate with p99 <= {args.p99_ms:.0f} ms",
                        r["max_rate_p99_ok"], "req/s", f">= {args.rate:.0f}",
                        (r["max_rate_p99_ok"] or 0) >= args.rate),
        ]
        if t.get("server"):
            rows.append(results.row(f"[{r['db']}] server: connections / UPDATEs / COMMITs "
                                    "during the run at the target rate",
                                    f"{t['server']['Connections']} / {t['server']['Com_update']}"
                                    f" / {t['server']['Com_commit']}"))
        if r.get("connect_cost"):
            c = r["connect_cost"]
            rows.append(results.row(f"[{r['db']}] one new connection: PyMySQL's default / "
                                    "ravada's (wall)",
                                    f"{c['pymysql_default']['wall_ms']:.1f} / "
                                    f"{c['ravada']['wall_ms']:.1f}", "ms"))
    met = {r["db"]: {"at_target": meets(r["at_target"], args.p99_ms),
                     "max_rate": (r["max_rate_p99_ok"] or 0) >= args.rate} for r in runs}
    data = {"benchmark": "p4_front", "started": started, "finished": results.utc_now(),
            "met": met,
            "env": envd, "params": {k: v for k, v in vars(args).items()}, "runs": runs,
            "rows": rows}
    path = results.save("p4_front", data)
    results.render_readme()
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
