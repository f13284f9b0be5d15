#!/usr/bin/env python3
"""P6: ``ansible-playbook site.yml`` re-run on an already converged host.

Runs on the controller, from the repository root. A first run converges the host (untimed,
skipped with ``--assume-converged``); the measured run reports wall time, the PLAY RECAP
counts per host, the tasks that reported ``changed``, and the slowest tasks (the
``ansible.posix.profile_tasks`` callback: the playbook's own profile).

    python3 bench/p6_rerun.py -i inventories/local          # the `make demo` host
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import env as benv  # noqa: E402
from benchlib import results  # noqa: E402

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"(?:\s+skipped=(\d+))?(?:\s+rescued=(\d+))?(?:\s+ignored=(\d+))?")
TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]")
PROFILE = re.compile(r"^(.+?) -{2,} (\d+\.\d+)s\s*$")


def parse(output: str) -> dict[str, Any]:
    """Recap counts per host, the changed tasks and the per-task times of a run's output."""
    recap: dict[str, dict[str, int]] = {}
    changed: list[str] = []
    slow: list[tuple[str, float]] = []
    task = ""
    for line in output.splitlines():
        if m := TASK.match(line):
            task = m.group(1)
        elif line.startswith("changed:"):
            changed.append(f"{task}: {line.split(']')[0].split('[')[-1]}")
        elif m := RECAP.match(line):
            keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
            recap[m.group(1)] = {k: int(v or 0) for k, v in zip(keys, m.groups()[1:], strict=True)}
        elif m := PROFILE.match(line.strip()):
            slow.append((m.group(1).strip(), float(m.group(2))))
    return {"recap": recap, "changed_tasks": changed,
            "slowest_tasks": sorted(slow, key=lambda t: -t[1])[:15]}


def run(cmd: list[str], envv: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=envv, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, res.returncode, res.stdout + res.stderr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-i", "--inventory", default="inventories/local")
    p.add_argument("--playbook", default="site.yml")
    p.add_argument("--limit")
    p.add_argument("--assume-converged", action="store_true", help="skip the converging run")
    p.add_argument("--target-s", type=float, default=60)
    p.add_argument("--ansible-playbook", default=str(Path(sys.executable).parent /
                                                     "ansible-playbook"))
    args = p.parse_args(argv)
    exe = args.ansible_playbook if Path(args.ansible_playbook).exists() else shutil.which(
        "ansible-playbook")
    if not exe:
        raise SystemExit("ansible-playbook not found (make venv, or --ansible-playbook)")
    cmd = [exe, "-i", args.inventory, args.playbook, *(["--limit", args.limit]
                                                       if args.limit else [])]
    envv = {**os.environ, "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    started = results.utc_now()
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    envd = {"machine": benv.machine(), "versions": benv.versions(
        None, ansible=ver.stdout.splitlines()[0] if ver.stdout else "?")}
    print(benv.describe(envd), flush=True)
    if not args.assume_converged:
        wall, rc, out = run(cmd, envv)
        print(f"converging run: {wall:.1f} s, rc {rc}", flush=True)
        if rc != 0:
            print(out[-4000:])
            raise SystemExit("the converging run failed; fix the deployment first")
    wall, rc, out = run(cmd, envv)
    parsed = parse(out)
    changed = sum(h["changed"] for h in parsed["recap"].values())
    failed = sum(h["failed"] + h["unreachable"] for h in parsed["recap"].values())
    print(f"re-run: {wall:.1f} s, rc {rc}, changed={changed}, failed={failed}", flush=True)
    for t in parsed["changed_tasks"]:
        print(f"  changed: {t}")
    (results.RESULTS_DIR / "p6_rerun_output.txt").write_text(out, encoding="utf-8")
    rows = [
        results.row("wall time of the re-run", round(wall, 1), "s", f"<= {args.target_s:.0f} s",
                    wall <= args.target_s and rc == 0),
        results.row("changed (all hosts)", changed, "", "0", changed == 0 and rc == 0),
        results.row("hosts / failed+unreachable", f"{len(parsed['recap'])} / {failed}"),
        results.row("slowest task", f"{parsed['slowest_tasks'][0][0]} "
                    f"({parsed['slowest_tasks'][0][1]:.1f} s)" if parsed["slowest_tasks"]
                    else None),
    ]
    data = {"benchmark": "p6_rerun", "started": started, "finished": results.utc_now(),
            "env": envd, "params": vars(args), "command": cmd, "rc": rc, "wall_s": wall,
            **parsed, "rows": rows}
    path = results.save("p6_rerun", data)
    results.render_readme()
    print(f"results: {path}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
