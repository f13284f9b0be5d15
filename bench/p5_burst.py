#!/usr/bin/env python3
"""P5: a burst -- 30 users click "Start" at the same moment, each with a token of their own.

Run on the deployed host. Result: how many desktops came up (display info returned, port
accepting, machine ``running`` in the API), the errors, and the total time from the common
start to the last desktop, against ``30 x raw single clone / cores`` where the raw single
clone time is the median of raw libvirt-python rounds measured in this same run.

    python3 bench/p5_burst.py --url https://127.0.0.1 --users 30   # RAVADA_ADMIN_PASSWORD=...
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import libvirt  # noqa: E402  # type: ignore[import-not-found]

from benchlib import deployed, results  # noqa: E402
from benchlib import env as benv  # noqa: E402
from benchlib import raw as braw  # noqa: E402
from benchlib.api import Api  # noqa: E402
from benchlib.stats import ratio, summary  # noqa: E402
from benchlib.timing import backend_split, profile_daemons  # noqa: E402


def burst(sess: deployed.Session, clients: list[Api]) -> tuple[list[dict[str, Any]], float]:
    """All clients click behind one barrier; returns their outcomes and the total time."""
    barrier = threading.Barrier(len(clients) + 1)

    def one(client: Api) -> dict[str, Any]:
        barrier.wait()
        try:
            out = sess.click(client)
            out["end"] = time.perf_counter()
            return out
        except Exception as exc:  # noqa: BLE001 -- every failure is a result here
            return {"error": f"{type(exc).__name__}: {exc}", "end": time.perf_counter()}

    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(one, c) for c in clients]
        barrier.wait()
        t0 = time.perf_counter()
        outcomes = [f.result() for f in futures]
    total = max(o["end"] for o in outcomes) - t0
    return outcomes, total


def cleanup(admin: Api, prefix: str, timeout: float = 600) -> int:
    """Remove every desktop named ``*-<prefix>-*``, also the late ones of timed-out clicks.

    A click that gave up still has its clone request queued; the machine appears later, so
    this repeats (removals submitted together, then waited for) until none is left.
    """
    deadline = time.monotonic() + timeout
    removed = 0
    while time.monotonic() < deadline:
        mine = [m for m in deployed._list(admin.call("machines"))
                if f"-{prefix}-" in m["name"] and not m.get("is_base")]
        if not mine:
            return removed
        ids = [admin.call("action", id=m["id"], action="remove", body={})["request_id"]
               for m in mine if m["state"] not in ("creating", "removing")]
        for rid in ids:
            try:
                admin.wait_request(rid, timeout=max(1, deadline - time.monotonic()))
                removed += 1
            except RuntimeError as exc:
                print(f"  cleanup: {exc}")
        if not ids:
            time.sleep(0.5)  # only clones still being made: let them appear
    raise TimeoutError(f"desktops {prefix}-* still there after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    deployed.add_options(p)
    p.add_argument("--users", type=int, default=30)
    p.add_argument("--raw-rounds", type=int, default=5, help="raw single clones for the baseline")
    p.add_argument("--pool", type=int, default=0,
                   help="click a base with a pool of this many pre-started clones (P2 burst); "
                        "results go to p5_burst_pooled")
    p.add_argument("--target-last", type=float, default=3.0,
                   help="with --pool: seconds from the first click to the last display")
    p.add_argument("--settle", type=float, default=45.0,
                   help="with --pool: seconds between the pool being up and the burst")
    p.add_argument("--fill-timeout", type=float, default=1800.0,
                   help="with --pool: seconds the pool may take to fill (a loaded host is slow)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the daemons during the burst; results go to p5_burst_profiled")
    args = p.parse_args(argv)

    started = results.utc_now()
    sess = deployed.connect(args)
    envd = deployed.environment(args, sess.admin)
    print(benv.describe(envd), flush=True)
    clients = [sess.user("bench-p5") for _ in range(args.users)]
    conn = libvirt.open(args.libvirt_uri)
    first = sess.click(clients[0])
    tpl = braw.template_from_domain(conn, first["machine"])
    sess.admin.remove(first["machine_id"])
    raw_s = summary([braw.clone_once(conn, tpl, args.display_kind)["total_s"]
                     for _ in range(args.raw_rounds)])
    cores = benv.cpu_count()
    reference = args.users * raw_s["median"] / cores
    print(f"raw single clone median {raw_s['median']:.3f} s; reference {args.users} x raw / "
          f"{cores} cores = {reference:.2f} s", flush=True)
    pool_base = None
    if args.pool:
        from p2_pool import pooled_base, set_pool, wait_pool

        pool_base = pooled_base(sess, args.pool, args.base_memory_mb)
        try:
            fill = wait_pool(sess.admin, pool_base, args.pool, timeout=args.fill_timeout)
        except TimeoutError:  # leave no pool of guests loading the host behind
            set_pool(sess.admin, pool_base, 0)
            cleanup(sess.admin, "pool")
            raise
        print(f"pool of {args.pool} running after {fill:.1f} s; letting the guests "
              f"settle for {args.settle:.0f} s (a class starts after its pool was made)",
              flush=True)
        time.sleep(args.settle)
        sess.base_id = pool_base

    done: list[tuple[list[dict[str, Any]], float]] = []
    prof = None
    if args.profile:
        prof = profile_daemons(lambda: done.append(burst(sess, clients)), "p5")
    else:
        done.append(burst(sess, clients))
    outcomes, total = done[0]
    for o in outcomes:  # the request's own timestamps: queue wait vs backend work
        if "total_s" in o:
            o.update(backend_split(sess.admin, o))
    load_after = round(os.getloadavg()[0], 2)
    errors = [o["error"] for o in outcomes if "error" in o]
    states = {m["id"]: m["state"] for m in deployed._list(sess.admin.call("machines"))}
    running = sum(1 for o in outcomes if states.get(o.get("machine_id")) == "running")
    per_user = summary([o["total_s"] for o in outcomes if "total_s" in o])
    queue_wait = summary([o["queue_wait_s"] for o in outcomes if "queue_wait_s" in o])
    backend = summary([o["backend_s"] for o in outcomes if "backend_s" in o])
    print(f"burst of {args.users}: {running} running, {len(errors)} errors, total {total:.2f} s "
          f"(reference {reference:.2f} s, ratio {ratio(total, reference)})", flush=True)
    for e in errors[:5]:
        print(f"  error: {e}")
    print(f"removed {cleanup(sess.admin, 'bench-p5')} desktops", flush=True)
    if pool_base is not None:
        set_pool(sess.admin, pool_base, 0)
        cleanup(sess.admin, "pool")
    conn.close()

    ok_desktops = ok = running == args.users and not errors
    pooled_rows = []
    if args.pool:
        ok = ok_desktops and total <= args.target_last
        pooled_rows = [results.row(f"pool of {args.pool}: first click to last display",
                                   round(total, 3), "s", f"<= {args.target_last} s", ok)]
    rows = [*pooled_rows,
        results.row("desktops running / errors", f"{running} / {len(errors)}", "",
                    f"{args.users} / 0", ok_desktops),
        results.row("total time, first click to last desktop", round(total, 3), "s"),
        results.row(f"reference {args.users} x raw / {cores} cores (same run)",
                    round(reference, 3), "s"),
        results.row("ratio total / reference", ratio(total, reference)),
        results.row("per-user click median / p95",
                    f"{per_user.get('median', float('nan')):.3f} / "
                    f"{per_user.get('p95', float('nan')):.3f}", "s"),
        results.row("per-clone queue wait median / max",
                    f"{queue_wait.get('median', float('nan')):.3f} / "
                    f"{queue_wait.get('max', float('nan')):.3f}", "s"),
        results.row("per-clone backend work median / max",
                    f"{backend.get('median', float('nan')):.3f} / "
                    f"{backend.get('max', float('nan')):.3f}", "s"),
        results.row("load average (1 min) at start / after the burst",
                    f"{envd['machine'].get('loadavg_1m')} / {load_after}"),
    ]
    data = {"benchmark": "p5_burst", "started": started, "finished": results.utc_now(),
            "commit": os.environ.get("RAVADA_BENCH_COMMIT", "unknown"), "env": envd,
            "params": {k: v for k, v in vars(args).items()
                       if k not in ("admin_password", "admin_token")},
            "raw_single": raw_s, "cores": cores, "reference_s": reference, "total_s": total,
            "running": running, "errors": errors, "per_user": per_user,
            "queue_wait": queue_wait, "backend": backend, "loadavg_1m_after": load_after,
            "profile": prof, "outcomes": outcomes, "rows": rows}
    name = "p5_burst_profiled" if args.profile else (
        "p5_burst_pooled" if args.pool else "p5_burst")
    path = results.save(name, data)
    results.render_readme()
    print(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
