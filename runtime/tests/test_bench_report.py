"""bench/report.py --check: documents quote only figures of the current result files.

(Issue 14, point 3.) ``make lint`` runs the check on the repository; these tests show what it
catches on small documents of their own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib import prose, results  # noqa: E402

PROV = {"commit": "0123456789abcdef", "dirty": False, "host": "vm", "load_start": [0.5, 1, 1],
        "load_end": [0.7, 1, 1]}


def _setup(tmp_path: Path, prose_text: str, provenance: bool = True) -> tuple[Path, Path]:
    res = tmp_path / "results"
    res.mkdir(parents=True)
    data = {"benchmark": "p1_click", "median_ratio": 1.0834, "api": {"p95": 0.4412},
            "met": {"ratio": True}, "rows": [results.row("median ratio API / raw", 1.083, "",
                                                         "<= 1.10", True)]}
    if provenance:
        data["provenance"] = PROV
    (res / "p1_click.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\n\n{results.BEGIN}\n{results.END}\n\n{prose_text}\n")
    readme.write_text(results.with_table(readme.read_text(), res))
    return res, readme


def _check(res: Path, readme: Path) -> list[str]:
    return prose.check(res, readme, docs=[])


def test_placeholders_are_filled_and_then_pass(tmp_path: Path) -> None:
    text = ("P1: the click is <!--fig p1_click median_ratio .2f-->9.99<!--/fig--> x raw, "
            "p95 <!--fig p1_click api.p95 *1000:.0f-->1<!--/fig--> ms, target "
            "<!--fig p1_click met.ratio met-->?<!--/fig-->.")
    res, readme = _setup(tmp_path, text)
    assert any("not the current result" in p for p in _check(res, readme))
    prose.fill_all(res, [readme])
    filled = readme.read_text()
    assert "-->1.08<!--" in filled and "-->441<!--" in filled and "-->met<!--" in filled
    assert _check(res, readme) == []


def test_a_typed_figure_in_no_result_is_stale(tmp_path: Path) -> None:
    res, readme = _setup(tmp_path, "P1 median ratio 1.08 (target 1.10); it was 1.23 before.")
    problems = _check(res, readme)
    assert len(problems) == 1 and "'1.23'" in problems[0], problems
    # counts, versions and code are not figures
    res2, readme2 = _setup(tmp_path / "b", "2 cores, Debian 12, `p99 <= 871 ms`, x1.5 steps")
    assert _check(res2, readme2) == []


def test_results_without_commit_and_load_fail(tmp_path: Path) -> None:
    res, readme = _setup(tmp_path, "no figures", provenance=False)
    assert any("records no commit and load" in p for p in _check(res, readme))


def test_save_records_commit_and_load(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAVADA_BENCH_COMMIT", "abc123+dirty")
    path = results.save("x", {"rows": []}, tmp_path)
    prov = json.loads(path.read_text())["provenance"]
    assert prov["commit"] == "abc123" and prov["dirty"] is True
    assert len(prov["load_start"]) == 3 and len(prov["load_end"]) == 3


def test_restamp_takes_only_what_the_file_recorded(tmp_path: Path) -> None:
    """An old result that wrote its commit and both loads gets a provenance from them; one
    that did not keeps failing the strict check (it must be re-run)."""
    res, readme = _setup(tmp_path, "no figures", provenance=False)
    old = {"commit": "feedbeef+dirty", "loadavg_1m_after": 9.5,
           "env": {"machine": {"hostname": "h", "loadavg_1m": 4.5}}, "rows": []}
    (res / "p2_pool.json").write_text(json.dumps(old))
    assert results.restamp(res) == ["p2_pool.json"]
    prov = json.loads((res / "p2_pool.json").read_text())["provenance"]
    assert (prov["commit"], prov["dirty"], prov["load_start"], prov["load_end"]) == \
        ("feedbeef", True, [4.5], [9.5])
    problems = prose.unrecorded(res)
    assert len(problems) == 1 and "p1_click.json" in problems[0], problems
