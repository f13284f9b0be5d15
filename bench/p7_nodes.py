"""P7: many hypervisor nodes on one MariaDB -- placement, claiming, lost and double claims.

``--backends`` rvd_back daemons (default 50), each a process of this machine with its own
libvirt test:///default driver (private to the process) and its own node row, share one
private MariaDB server. ``--producers`` processes (the fronts) submit ``--desktops`` clone
requests (default 2,000; one user each, ``start: true``) as fast as they can; each request
is placed by ``ravada.placement`` when it is enqueued, and claimed by its node's backend.
Nothing wakes a backend across processes: like nodes on other hosts they find their
requests by polling (``queue.fallback_poll``), which is what a real cluster does.

Measured: placement time per request (p50/p99, timed around ``placement.route`` inside
``queue.enqueue``), claim throughput (claims per second, first claim to last), completion
throughput, queue wait, requests lost (submitted but not finished by the end: must be 0),
double claims (one request id claimed twice, from every backend's own claim log: must be
0), claims by a backend of another node (must be 0), and the spread of desktops per node.

    .venv/bin/python bench/p7_nodes.py [--backends 50] [--desktops 2000] [--producers 4]

Writes bench/results/p7_nodes.json (with the commit and load: benchlib.results.save).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import env, results, stats  # noqa: E402
from benchlib.mariadb import MariaDB  # noqa: E402

BASE = "p7base"
POOL = "default-pool"


def _config(url: str, name: str, home: Path) -> Any:
    from ravada import config as rconfig

    return rconfig.from_dict({
        "log_level": "WARNING",
        "database": {"url": url},
        "libvirt": {"uri": "test:///default", "storage_pool": POOL},
        "queue": {"socket": str(home / "queue.sock"), "workers": 2, "fallback_poll": 0.5},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(home / "front.key"), "iso_dir": str(home / "isos")},
        "node": {"name": name, "display_address": f"{name}.example.org"},
    })


def backend(url: str, name: str, home: str, ready: Any, stop: Any) -> None:
    """One node: the base image in its private test:///default, then rvd_back's loop."""
    os.environ["RAVADA_RUNTIME_DIR"] = home
    logging.basicConfig(level=logging.WARNING)
    import libvirt

    from ravada import queue
    from ravada.back.daemon import Daemon
    from ravada.virt import render_domain

    home_p = Path(home)
    (home_p / "isos").mkdir(parents=True, exist_ok=True)
    conn = libvirt.open("test:///default")
    pool = conn.storagePoolLookupByName(POOL)
    vol = pool.createXML(f"<volume><name>{BASE}.base.qcow2</name><capacity>1073741824"
                         "</capacity><target><format type='qcow2'/></target></volume>", 0)
    conn.defineXML(render_domain(BASE, 256, 1, [vol.path()], None, "127.0.0.1", "test"))
    claims = open(home_p / "claims.log", "w", buffering=1)  # noqa: SIM115 (process-long)
    original = queue.claim

    def logged_claim(*args: Any, **kwargs: Any) -> int | None:
        req_id = original(*args, **kwargs)
        if req_id is not None:
            claims.write(f"{req_id}\n")
        return req_id

    queue.claim = logged_claim  # type: ignore[assignment]
    daemon = Daemon(_config(url, name, home_p), screenshot_dir=home_p / "shots",
                    name=f"{name}:{os.getpid()}", stop_wait=5)
    daemon.start()
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    ready.set()
    stop.wait()
    daemon.stop()
    thread.join(30)
    daemon.close()
    claims.close()


def producer(url: str, users: list[int], base_id: int, out: Any) -> None:
    """A front: submit one clone per user; report (request id, placement seconds)."""
    from ravada import placement, queue
    from ravada.db import Database

    timings: list[float] = []
    route = placement.route

    def timed_route(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return route(*args, **kwargs)
        finally:
            timings.append(time.perf_counter() - t0)

    placement.route = timed_route  # type: ignore[assignment]
    db = Database(url, pool_size=2)
    ids = []
    for user_id in users:
        with db.session() as s:
            ids.append(queue.enqueue(s, "clone", {"user_id": user_id, "start": True},
                                     machine_id=base_id, user_id=user_id).id)
    db.dispose()
    out.send((ids, timings))
    out.close()


def _seed(url: str, n_users: int) -> list[int]:
    from ravada.db import Database, User
    from ravada.db.migrate import upgrade

    db = Database(url)
    upgrade(db.engine)
    with db.session() as s:
        rows = [User(name=f"p7u{i:05d}") for i in range(n_users)]
        s.add_all(rows)
        s.flush()
        ids = [u.id for u in rows]
    db.dispose()
    return ids


def _base(url: str) -> int:
    """The base row on the first node, ready on every node (its image is in each libvirt)."""
    from sqlalchemy import select

    from ravada.db import BaseCopy, Database, Machine, Node

    db = Database(url)
    with db.session() as s:
        nodes = s.scalars(select(Node.id).order_by(Node.id)).all()
        base = Machine(name=BASE, is_base=True, state="shutdown", memory_mb=256,
                       node_id=nodes[0])
        s.add(base)
        s.flush()
        s.add_all(BaseCopy(machine_id=base.id, node_id=n, state="ready") for n in nodes)
        base_id = base.id
    db.dispose()
    return base_id


def _outcome(url: str, ids: list[int], timeout: float) -> dict[str, Any]:
    """Wait for every request to end; then read what happened to each."""
    from sqlalchemy import func, select

    from ravada.db import Database, Machine, Node, Request

    db = Database(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.sessionmaker() as s:
            left = s.scalar(select(func.count()).select_from(Request).where(
                Request.id.in_(ids), Request.status.in_(("requested", "working"))))
        if not left:
            break
        time.sleep(1)
    with db.sessionmaker() as s:
        names = dict(s.execute(select(Node.id, Node.name)).all())
        rows = s.execute(select(Request.id, Request.status, Request.node_id, Request.worker,
                                Request.created_at, Request.started_at, Request.finished_at,
                                Request.attempts, Request.error)
                         .where(Request.id.in_(ids))).all()
        running = dict(s.execute(select(Machine.node_id, func.count()).where(
            Machine.base_id.is_not(None), Machine.state == "running")
            .group_by(Machine.node_id)).all())
    db.dispose()
    return {"names": names, "rows": rows, "running": running}


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ravada-p7-"))
    server = MariaDB(tmp)
    server.start()
    url = server.url()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = []
    try:
        users = _seed(url, args.desktops)
        t0 = time.monotonic()
        readies = []
        for i in range(args.backends):
            name = f"node{i + 1:02d}"
            ready = ctx.Event()
            p = ctx.Process(target=backend, args=(url, name, str(tmp / name), ready, stop),
                            daemon=True)
            p.start()
            procs.append(p)
            readies.append(ready)
        for ready in readies:
            if not ready.wait(300):
                raise RuntimeError("a backend did not start in 300 s")
        started_s = time.monotonic() - t0
        print(f"{args.backends} backends up in {started_s:.1f} s", flush=True)
        base_id = _base(url)
        chunks = [users[i::args.producers] for i in range(args.producers)]
        pipes, producers = [], []
        t_submit = time.monotonic()
        for chunk in chunks:
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=producer, args=(url, chunk, base_id, send))
            p.start()
            pipes.append(recv)
            producers.append(p)
        ids: list[int] = []
        placement_s: list[float] = []
        for recv in pipes:
            got, timings = recv.recv()
            ids += got
            placement_s += timings
        for p in producers:
            p.join()
        submit_s = time.monotonic() - t_submit
        print(f"{len(ids)} requests submitted in {submit_s:.1f} s", flush=True)
        outcome = _outcome(url, ids, args.timeout)
        wall_s = time.monotonic() - t_submit
    finally:
        stop.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.terminate()
    claims: Counter[int] = Counter()
    for i in range(args.backends):
        log = tmp / f"node{i + 1:02d}" / "claims.log"
        if log.exists():
            claims.update(int(x) for x in log.read_text().split())
    server.stop()
    return _figures(args, ids, placement_s, outcome, claims, started_s, submit_s, wall_s)


def _figures(args: argparse.Namespace, ids: list[int], placement_s: list[float],
             outcome: dict[str, Any], claims: Counter[int], started_s: float,
             submit_s: float, wall_s: float) -> dict[str, Any]:
    rows, names, running = outcome["rows"], outcome["names"], outcome["running"]
    by_status = Counter(r.status for r in rows)
    lost = len(set(ids) - {r.id for r in rows}) + by_status["requested"] + by_status["working"]
    double = sum(1 for c in claims.values() if c > 1)
    retried = sum(1 for r in rows if r.attempts != 1)
    wrong_node = sum(1 for r in rows if r.worker and r.node_id is not None
                     and r.worker.split(":")[0] != names.get(r.node_id))
    starts = sorted(r.started_at for r in rows if r.started_at)
    ends = sorted(r.finished_at for r in rows if r.finished_at)
    claim_rps = len(starts) / max((starts[-1] - starts[0]).total_seconds(), 1e-9)
    done_rps = len(ends) / max((ends[-1] - starts[0]).total_seconds(), 1e-9)
    waits = [(r.started_at - r.created_at).total_seconds() for r in rows if r.started_at]
    per_node = [running.get(n, 0) for n in names]
    place = stats.summary([x * 1000 for x in placement_s])
    errors = Counter((r.error or "")[:120] for r in rows if r.status == "failed")
    n = len(ids)
    ok = by_status["done"]
    return {
        "backends": args.backends, "desktops": args.desktops, "producers": args.producers,
        "backends_started_s": round(started_s, 2), "submit_s": round(submit_s, 2),
        "wall_s": round(wall_s, 2), "statuses": dict(by_status),
        "errors": dict(errors.most_common(5)), "running_per_node": dict(Counter(per_node)),
        "placement_ms": place, "queue_wait_s": stats.summary(waits),
        "claim_rps": round(claim_rps, 1), "done_rps": round(done_rps, 1), "lost": lost,
        "double_claims": double, "wrong_node_claims": wrong_node, "running": sum(per_node),
        "per_node_min": min(per_node), "per_node_max": max(per_node),
        "rows": [
            results.row("desktops placed and running / requests", f"{sum(per_node)} / {n}",
                        target=f"{n} / {n}", met=sum(per_node) == n and ok == n),
            results.row("requests lost", lost, target="0", met=lost == 0),
            results.row("double claims", double, target="0", met=double == 0),
            results.row("claims by another node's backend", wrong_node, target="0",
                        met=wrong_node == 0),
            results.row("requests failed / claimed more than once (retries)",
                        f"{by_status['failed']} / {retried}"),
            results.row("claim throughput (first to last claim)", round(claim_rps, 1),
                        "req/s"),
            results.row("completion throughput (first claim to last done)",
                        round(done_rps, 1), "req/s"),
            results.row("placement time p50 / p99", f"{place['median']:.2f} / {place['p99']:.2f}",
                        "ms"),
            results.row("queue wait p50 / p99",
                        f"{stats.percentile(waits, 50):.2f} / {stats.percentile(waits, 99):.2f}",
                        "s"),
            results.row("desktops per node min / max", f"{min(per_node)} / {max(per_node)}"),
            results.row("backends / producers / desktops",
                        f"{args.backends} / {args.producers} / {n}"),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", type=int, default=50)
    p.add_argument("--desktops", type=int, default=2000)
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the end")
    p.add_argument("--out-dir", type=Path, default=results.RESULTS_DIR)
    args = p.parse_args(argv)
    started = results.utc_now()
    data = run(args)
    data["started"] = started
    data["env"] = {"machine": env.machine(), "versions": env.versions("test:///default")}
    data["finished"] = results.utc_now()
    print(env.describe(data["env"]))
    for r in data["rows"]:
        print(f"  {r['metric']}: {r['value']} {r['unit']}".rstrip())
    path = results.save("p7_nodes", data, args.out_dir)
    print(f"wrote {path}")
    return 0 if all(r["met"] is not False for r in data["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
