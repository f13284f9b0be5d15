"""Where a click's time goes: request timestamps, and py-spy over the running daemons."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import profile, results
from benchlib.api import Api, ApiError


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def backend_split(admin: Api, rnd: dict[str, Any]) -> dict[str, float | None]:
    """From the request's own timestamps: queue wait, backend work, and the broker's rest."""
    try:
        req = admin.call("request", id=rnd["request_id"])
    except (ApiError, OSError, KeyError):
        return {}
    req = req.get("request", req)
    created, started, finished = (_ts(req.get(k)) for k in
                                  ("created_at", "started_at", "finished_at"))
    if not (created and started and finished):
        return {}
    backend = (finished - started).total_seconds()
    return {"queue_wait_s": (started - created).total_seconds(), "backend_s": backend,
            "broker_overhead_s": rnd["total_s"] - backend}


def daemon_pids(names: tuple[str, ...] = ("rvd_back", "rvd_front")) -> dict[str, int]:
    """The oldest process whose command line names each daemon (the master, for gunicorn)."""
    found: dict[str, tuple[float, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            start = float(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            continue
        for name in names:
            if name in cmd and "py-spy" not in cmd and (name not in found
                                                        or start < found[name][0]):
                found[name] = (start, int(entry))
    return {n: pid for n, (_, pid) in found.items()}


# rvd_back's time is spent waiting (libvirt, qemu-img, iptables, the database), so it is
# sampled with --idle and summarised over its request workers only: a wall-clock profile of
# the requests. rvd_front is sampled on-CPU.
WALL_CLOCK = {"rvd_back": "_execute (ravada/back/daemon.py"}


def profile_daemons(work: Callable[[], Any], label: str) -> dict[str, str] | None:
    """Sample rvd_back and rvd_front with py-spy while ``work()`` runs; write text summaries."""
    pids = daemon_pids()
    if not pids or not profile.py_spy():
        print("  no profile: py-spy or the daemons are not on this host")
        return None
    spies: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in pids.items():
        raw = Path(f"/tmp/{label}-{name}.raw")
        raw.unlink(missing_ok=True)
        spies[name] = (profile.record(pid, 3600, raw, idle=name in WALL_CLOCK), raw)
    try:
        work()
    finally:
        for proc, _ in spies.values():
            proc.send_signal(signal.SIGINT)
        for proc, _ in spies.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    out = {}
    for name, (_, raw) in spies.items():
        if raw.exists():
            dest = results.RESULTS_DIR / f"{label}_profile_{name}.txt"
            kind = ("wall clock of the request workers (--idle)" if name in WALL_CLOCK
                    else "on-CPU")
            dest.write_text(f"py-spy of {name} (pid {pids[name]}) during {label} rounds, "
                            f"{kind}\n\n" + profile.summarise(raw, focus=WALL_CLOCK.get(name)),
                            encoding="utf-8")
            out[name] = str(dest.relative_to(results.BENCH_DIR))
    return out
