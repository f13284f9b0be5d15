"""Results: one JSON file per benchmark under ``bench/results/`` and the table in the README.

Every result holds ``env`` (machine + versions), ``started``/``finished`` (UTC), the raw
samples, and ``rows``: ``{"metric", "value", "unit", "target", "met"}`` -- the lines of the
Markdown table that :func:`render_readme` writes between the markers in ``bench/README.md``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TITLES = {
    "p1_click": "P1 click-to-desktop (cold clone)",
    "p2_pool": "P2 click-to-desktop from a pool",
    "queue": "P3 queue",
    "p4_front": "P4 front under load",
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


def save(name: str, data: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` and return its path."""
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


def table(results_dir: Path = RESULTS_DIR) -> str:
    """The Markdown table of every ``*.json`` under ``results_dir``."""
    lines = ["| benchmark | metric | value | target | met | run (UTC) / host |",
             "|---|---|---|---|---|---|"]
    order = list(TITLES)
    files = sorted(results_dir.glob("*.json"),
                   key=lambda p: (order.index(p.stem) if p.stem in order else 99, p.stem))
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            lines.append(f"| {path.stem} | unreadable: {exc} | | | | |")
            continue
        title = TITLES.get(path.stem, path.stem)
        env = data.get("env", {})
        where = f"{data.get('finished', '?')} / {env.get('machine', {}).get('hostname', '?')}"
        for r in _rows_of(data):
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            value = f"{_fmt(r.get('value'))} {r.get('unit', '')}".strip()
            lines.append(f"| {title} | {r['metric']} | {value} | {r.get('target', '')} "
                         f"| {met} | {where} |")
            title, where = "", ""
    return "\n".join(lines)


def render_readme(readme: Path = README, results_dir: Path = RESULTS_DIR) -> None:
    """Replace the text between the result markers of the README with the current table."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table(results_dir)}\n{END}{tail}", encoding="utf-8")
