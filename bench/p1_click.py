#!/usr/bin/env python3
"""P1: click-to-desktop on a cold clone, through Apache, against raw libvirt-python.

Run on the deployed host (root, for the baseline's libvirtd). Each API round is the user's
"Start" on a base (``POST /api/v1/bases/<id>/start?wait=N``) until display info comes back
AND the display port accepts a TCP connection; the clone is then removed through the API
(untimed) so the next round is cold again. Each raw round is ``qemu-img create`` of an
overlay + ``defineXML`` + ``create`` + the same port check, with the XML of a clone that
rvd_back made in this run. Rounds alternate (API, raw, API, raw...) so drift hits both.

    python3 bench/p1_click.py --url https://127.0.0.1 -n 20    # RAVADA_ADMIN_PASSWORD=...
"""

from __future__ import annotations

import argparse
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
from benchlib.stats import ratio, summary  # noqa: E402
from benchlib.timing import backend_split, profile_daemons  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    deployed.add_options(p)
    p.add_argument("-n", type=int, default=20, help="rounds of each kind (>= 20 for the issue)")
    p.add_argument("--target-ratio", type=float, default=1.10)
    p.add_argument("--target-p95", type=float, default=1.5, help="seconds")
    p.add_argument("--profile", action="store_true", help="profile even when targets are met")
    args = p.parse_args(argv)

    started = results.utc_now()
    sess = deployed.connect(args)
    envd = deployed.environment(args, sess.admin)
    print(benv.describe(envd), flush=True)
    user = sess.user("bench-p1")
    conn = libvirt.open(args.libvirt_uri)

    # warm-up round (not counted): also gives the domain XML shape for the baseline
    first = sess.click(user)
    tpl = braw.template_from_domain(conn, first["machine"])
    sess.admin.remove(first["machine_id"])
    braw.clone_once(conn, tpl, args.display_kind)
    print(f"base id {sess.base_id}, baseline image {tpl.backing}", flush=True)

    api_rounds: list[dict[str, Any]] = []
    raw_rounds: list[dict[str, Any]] = []
    for i in range(args.n):
        a = sess.click(user)
        a.update(backend_split(sess.admin, a))
        sess.admin.remove(a["machine_id"])
        api_rounds.append(a)
        r = braw.clone_once(conn, tpl, args.display_kind)
        raw_rounds.append(r)
        print(f"  round {i + 1:>2}/{args.n}: api {a['total_s']:.3f} s   raw {r['total_s']:.3f} s",
              flush=True)

    api_s = summary([a["total_s"] for a in api_rounds])
    raw_s = summary([r["total_s"] for r in raw_rounds])
    med_ratio = ratio(api_s["median"], raw_s["median"])
    ok_ratio = med_ratio is not None and med_ratio <= args.target_ratio
    ok_p95 = api_s["p95"] <= args.target_p95
    parts = {k: summary([a[k] for a in api_rounds if a.get(k) is not None])
             for k in ("api_s", "port_wait_s", "queue_wait_s", "backend_s", "broker_overhead_s")}
    prof = None
    if args.profile or not (ok_ratio and ok_p95):
        prof = profile_daemons(lambda: [sess.admin.remove(sess.click(user)["machine_id"])
                                        for _ in range(5)], "p1")
    rows = [
        results.row("click-to-desktop median / p95 (API)",
                    f"{api_s['median']:.3f} / {api_s['p95']:.3f}", "s",
                    f"p95 <= {args.target_p95} s", ok_p95),
        results.row("raw libvirt median / p95 (same run)",
                    f"{raw_s['median']:.3f} / {raw_s['p95']:.3f}", "s"),
        results.row("median ratio API / raw", med_ratio, "", f"<= {args.target_ratio}", ok_ratio),
        results.row("median queue wait / backend work",
                    f"{parts['queue_wait_s'].get('median', float('nan')):.3f} / "
                    f"{parts['backend_s'].get('median', float('nan')):.3f}", "s"),
        results.row("rounds", f"{len(api_rounds)} + {len(raw_rounds)}"),
    ]
    data = {"benchmark": "p1_click", "started": started, "finished": results.utc_now(),
            "env": envd, "params": {k: v for k, v in vars(args).items()
                                    if k not in ("admin_password", "admin_token")},
            "api": api_s, "raw": raw_s, "median_ratio": med_ratio, "api_parts": parts,
            "met": {"ratio": ok_ratio, "p95": ok_p95, "both": ok_ratio and ok_p95},
            "api_rounds": api_rounds, "raw_rounds": raw_rounds, "profile": prof, "rows": rows}
    path = results.save("p1_click", data)
    results.render_readme()
    print(f"API  {api_s}\nraw  {raw_s}\nmedian ratio {med_ratio}  "
          f"(target <= {args.target_ratio}: {'met' if ok_ratio else 'MISSED'}); "
          f"p95 {api_s['p95']:.3f} s (target <= {args.target_p95}: "
          f"{'met' if ok_p95 else 'MISSED'})\nresults: {path}")
    conn.close()
    time.sleep(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
