"""Results: one JSON file per benchmark under ``bench/results/`` and the table in the README.

Every result holds ``env`` (machine + versions), ``started``/``finished`` (UTC), the raw
samples, ``rows``: ``{"metric", "value", "unit", "target", "met"}`` -- the lines of the
Markdown table that :func:`render_readme` writes between the markers in ``bench/README.md``
-- and ``provenance`` (stamped by :func:`save`): the git commit of the code measured and the
machine's load average when the script started and when it saved.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

# The load average when this script started (benchlib is imported first thing).
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]

BENCH_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TITLES = {
    "p1_click": "P1 click-to-desktop (cold clone)",
    "p2_pool": "P2 click-to-desktop from a pool",
    "queue": "P3 queue",
    "p4_front": "P4 front under load",
    "p4_connect": "P4: one new MariaDB connection",
    "p5_burst": "P5 burst of 30",
    "p5_burst_pooled": "P5 burst of 30 against a pool of 30",
    "p5_burst_profiled": "P5 burst, again under py-spy",
    "p6_rerun": "P6 playbook re-run",
}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def row(metric: str, value: Any, unit: str = "", target: str = "",
        met: bool | None = None) -> dict[str, Any]:
    """One line of the results table."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "met": met}


def git_commit() -> dict[str, Any]:
    """The commit measured: ``RAVADA_BENCH_COMMIT`` (run.sh sets it for runs on a deployed
    host, where there is no checkout), else this checkout's HEAD; ``dirty`` when runtime/ or
    bench/ (results and README aside) differ from it."""
    given = os.environ.get("RAVADA_BENCH_COMMIT")
    if given:
        commit, _, flag = given.partition("+")
        return {"commit": commit, "dirty": flag == "dirty"}
    root = BENCH_DIR.parent

    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             check=False)
        return res.stdout.strip() if res.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    changed = [line for line in git("status", "--porcelain", "--", "runtime", "bench")
               .splitlines() if "bench/results/" not in line and "bench/README.md" not in line]
    return {"commit": commit or "unknown", "dirty": bool(changed)}


def provenance() -> dict[str, Any]:
    """Commit and load of this run (start: when the script started; end: now)."""
    return {**git_commit(), "host": platform.node(), "load_start": LOAD_AT_START,
            "load_end": [round(x, 2) for x in os.getloadavg()]}


def save(name: str, data: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` (with its :func:`provenance`); return its path."""
    data["provenance"] = provenance()
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n",
                    encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "n/a" if value is None else str(value)


def _rows_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of a result; results without ``rows`` show their numeric top level."""
    if isinstance(data.get("rows"), list):
        return data["rows"]
    return [row(k, v) for k, v in data.items() if isinstance(v, (int, float))]


def _provenance_cell(prov: Any, data: dict[str, Any] | None = None) -> str:
    if not isinstance(prov, dict):
        commit = (data or {}).get("commit")
        load = ((data or {}).get("env") or {}).get("machine", {}).get("loadavg_1m")
        if commit and load is not None:  # a script's own record: commit and load at start
            return f"{str(commit)[:10]} / {load}, **end not recorded**"
        return "**not recorded**"
    commit = str(prov.get("commit", "?"))[:10] + (" (dirty)" if prov.get("dirty") else "")
    start, end = prov.get("load_start") or ["?"], prov.get("load_end") or ["?"]
    return f"{commit} / {start[0]}, {end[0]}"


def table(results_dir: Path = RESULTS_DIR) -> str:
    """The Markdown table of every ``*.json`` under ``results_dir``."""
    lines = ["| benchmark | metric | value | target | met | run (UTC) / host "
             "| commit / load at start, end |",
             "|---|---|---|---|---|---|---|"]
    order = list(TITLES)
    files = sorted(results_dir.glob("*.json"),
                   key=lambda p: (order.index(p.stem) if p.stem in order else 99, p.stem))
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            lines.append(f"| {path.stem} | unreadable: {exc} | | | | | |")
            continue
        title = TITLES.get(path.stem, path.stem)
        env = data.get("env", {})
        where = f"{data.get('finished', '?')} / {env.get('machine', {}).get('hostname', '?')}"
        prov = _provenance_cell(data.get("provenance"), data)
        for r in _rows_of(data):
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            value = f"{_fmt(r.get('value'))} {r.get('unit', '')}".strip()
            lines.append(f"| {title} | {r['metric']} | {value} | {r.get('target', '')} "
                         f"| {met} | {where} | {prov} |")
            title, where, prov = "", "", ""
    return "\n".join(lines)


def with_table(text: str, results_dir: Path = RESULTS_DIR, name: str = "README") -> str:
    """``text`` with the current table between the result markers."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{name}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(results_dir)}\n{END}{tail}"


def render_readme(readme: Path = README, results_dir: Path = RESULTS_DIR) -> None:
    """Rewrite the table and the figures in the prose (:mod:`benchlib.prose`) of the README
    and of the other documents that quote results."""
    from benchlib import prose

    readme.write_text(with_table(readme.read_text(encoding="utf-8"), results_dir, str(readme)),
                      encoding="utf-8")
    prose.fill_all(results_dir, [readme, *prose.other_documents()])


def restamp(results_dir: Path = RESULTS_DIR) -> list[str]:
    """Give a provenance to results saved before :func:`save` stamped one, from what the
    file itself recorded: its ``commit``, the load when it started
    (``env.machine.loadavg_1m``) and when it ended (``loadavg_1m_after``). A file missing
    any of the three is left alone (re-run it). Returns the files stamped."""
    stamped = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data.get("provenance"), dict):
            continue
        machine = (data.get("env") or {}).get("machine") or {}
        commit, start, end = data.get("commit"), machine.get("loadavg_1m"), \
            data.get("loadavg_1m_after")
        if not commit or start is None or end is None:
            continue
        commit, _, flag = str(commit).partition("+")
        data["provenance"] = {"commit": commit, "dirty": flag == "dirty",
                              "host": machine.get("hostname", "?"), "load_start": [start],
                              "load_end": [end],
                              "restamped": "from the file's commit, loadavg_1m and "
                                           "loadavg_1m_after (saved before provenance)"}
        path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n",
                        encoding="utf-8")
        stamped.append(path.name)
    return stamped
