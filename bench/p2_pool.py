#!/usr/bin/env python3
"""P2: click-to-desktop from a pool of pre-started clones, next to P1's cold click and raw
libvirt, all in this run.

Run on the deployed host. A base ``bench-pool`` gets a pool (``PATCH /api/v1/bases/<id>/policy``:
``pool_size = pool_started = --pool``). Each round waits until the pool is full and running, then
times a user's "Start" (API through Apache until display info, then until the display port
accepts), removes that desktop (untimed), and does the same for a cold clone of the pool-less
``bench-base`` (P1's click) and a raw libvirt-python clone (``qemu-img`` overlay + define +
create + port). The pool keeper refills once requests stopped arriving for a few seconds
(``REFILL_QUIET`` in ``back/pool.py``), so a second, "busy" pooled click is made
``--busy-after`` seconds after the first, while the keeper clones and boots the replacement:
the difference to the quiet pooled click is what the refill costs a user who clicks meanwhile.

    python3 bench/p2_pool.py --url https://127.0.0.1 -n 20   # RAVADA_ADMIN_PASSWORD=...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
from benchlib.timing import backend_split  # noqa: E402

POOL_BASE = "bench-pool"


def pooled_base(sess: deployed.Session, size: int, memory_mb: int) -> int:
    """The id of ``bench-pool`` (made from a blank disk when missing) with a pool of ``size``."""
    admin = sess.admin
    found = [m for m in deployed._list(admin.call("machines")) if m["name"] == POOL_BASE]
    if found:
        base_id = int(found[0]["id"])
    else:
        ans = admin.call("create_machine", {"name": POOL_BASE, "memory_mb": memory_mb,
                                            "vcpus": 1, "disk_gb": 1})
        req = admin.wait_request(ans["request_id"], timeout=300)
        base_id = int((req.get("result") or {}).get("machine_id"))
        ans = admin.call("action", id=base_id, action="prepare_base", body={})
        admin.wait_request(ans["request_id"], timeout=300)
        admin.call("action", id=base_id, action="public", body={"public": True})
    set_pool(admin, base_id, size)
    return base_id


def set_pool(admin: Api, base_id: int, size: int) -> None:
    admin.call("policy", {"pool_size": size, "pool_started": size, "volatile": False},
               id=base_id)


def wait_pool(admin: Api, base_id: int, running: int, timeout: float = 600) -> float:
    """Seconds until ``running`` unassigned pool clones of the base run."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        ms = deployed._list(admin.call("machines"))
        up = sum(1 for m in ms if m.get("base_id") == base_id and m.get("is_pool")
                 and m["state"] == "running")
        if up >= running:
            return time.perf_counter() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"pool of base {base_id}: {up}/{running} running after {timeout} s")
        time.sleep(0.2)


def pooled_click(sess: deployed.Session, base_id: int, client: Api) -> dict[str, Any]:
    cold_base, sess.base_id = sess.base_id, base_id
    try:
        return sess.click(client)
    finally:
        sess.base_id = cold_base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    deployed.add_options(p)
    p.add_argument("-n", type=int, default=20, help="rounds of each kind")
    p.add_argument("--pool", type=int, default=3, help="pool_size = pool_started")
    p.add_argument("--target-median", type=float, default=0.150, help="seconds")
    p.add_argument("--target-p95", type=float, default=0.300, help="seconds")
    p.add_argument("--busy-after", type=float, default=3.5,
                   help="seconds between the quiet pooled click and the busy one (the keeper "
                        "starts refilling 3 s after the last request)")
    args = p.parse_args(argv)

    started = results.utc_now()
    sess = deployed.connect(args)
    envd = deployed.environment(args, sess.admin)
    print(benv.describe(envd), flush=True)
    pool_base = pooled_base(sess, args.pool, args.base_memory_mb)
    users = [sess.user("bench-p2") for _ in range(2)]
    conn = libvirt.open(args.libvirt_uri)
    first = sess.click(users[0])  # warm-up cold click: also the XML for the raw baseline
    tpl = braw.template_from_domain(conn, first["machine"])
    sess.admin.remove(first["machine_id"])
    braw.clone_once(conn, tpl, args.display_kind)
    fill = wait_pool(sess.admin, pool_base, args.pool)
    print(f"pool of {args.pool} running after {fill:.1f} s", flush=True)

    pooled: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    refill: list[float] = []
    for i in range(args.n):
        wait_pool(sess.admin, pool_base, args.pool)
        a = pooled_click(sess, pool_base, users[0])
        time.sleep(args.busy_after)  # the keeper is cloning and booting a's replacement now
        b = pooled_click(sess, pool_base, users[1])
        refill.append(wait_pool(sess.admin, pool_base, args.pool) + b["total_s"]
                      + args.busy_after)
        for out in (a, b):
            out.update(backend_split(sess.admin, out))
            sess.admin.remove(out["machine_id"])
        pooled.append(a)
        busy.append(b)
        c = sess.click(users[0])
        sess.admin.remove(c["machine_id"])
        cold.append(c)
        r = braw.clone_once(conn, tpl, args.display_kind)
        raw.append(r)
        print(f"  round {i + 1:>2}/{args.n}: pooled {a['total_s']:.3f} s  while refilling "
              f"{b['total_s']:.3f} s  cold {c['total_s']:.3f} s  raw {r['total_s']:.3f} s",
              flush=True)
    conn.close()
    set_pool(sess.admin, pool_base, 0)

    pooled_s = summary([a["total_s"] for a in pooled])
    busy_s = summary([b["total_s"] for b in busy])
    cold_s = summary([c["total_s"] for c in cold])
    raw_s = summary([r["total_s"] for r in raw])
    refill_s = summary(refill)
    ok_med = pooled_s["median"] <= args.target_median
    ok_p95 = pooled_s["p95"] <= args.target_p95
    rows = [
        results.row("pooled click-to-display median / p95 (API)",
                    f"{pooled_s['median']:.3f} / {pooled_s['p95']:.3f}", "s",
                    f"median <= {args.target_median} s", ok_med),
        results.row("pooled p95 target", round(pooled_s["p95"], 3), "s",
                    f"p95 <= {args.target_p95} s", ok_p95),
        results.row("pooled click while the pool refills median / p95",
                    f"{busy_s['median']:.3f} / {busy_s['p95']:.3f}", "s"),
        results.row("P1 cold click median / p95 (same run)",
                    f"{cold_s['median']:.3f} / {cold_s['p95']:.3f}", "s"),
        results.row("raw libvirt clone median / p95 (same run)",
                    f"{raw_s['median']:.3f} / {raw_s['p95']:.3f}", "s"),
        results.row("median ratio pooled / raw", ratio(pooled_s["median"], raw_s["median"])),
        results.row("refill of 2 hand-outs (first click to a full pool) median",
                    round(refill_s["median"], 3), "s"),
        results.row("rounds / pool size", f"{len(pooled)} / {args.pool}"),
    ]
    load_after = round(os.getloadavg()[0], 2)
    rows.append(results.row("load average (1 min) at start / end",
                            f"{envd['machine'].get('loadavg_1m')} / {load_after}"))
    data = {"benchmark": "p2_pool", "started": started, "finished": results.utc_now(),
            "commit": os.environ.get("RAVADA_BENCH_COMMIT", "unknown"),
            "loadavg_1m_after": load_after, "env": envd,
            "params": {k: v for k, v in vars(args).items()
                       if k not in ("admin_password", "admin_token")},
            "pooled": pooled_s, "pooled_while_refilling": busy_s, "cold": cold_s, "raw": raw_s,
            "refill": refill_s, "pooled_rounds": pooled, "busy_rounds": busy,
            "cold_rounds": cold, "raw_rounds": raw, "rows": rows}
    path = results.save("p2_pool", data)
    results.render_readme()
    print(f"pooled {pooled_s}\nwhile refilling {busy_s}\ncold {cold_s}\nraw {raw_s}\n"
          f"results: {path}")
    return 0 if ok_med and ok_p95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
