"""Figures in prose that stay true: filled from the result files, and checked against them.

A figure quoted in a document is a placeholder that :func:`fill` rewrites from the current
``bench/results/*.json``::

    the click costs <!--fig p1_click median_ratio .2f-->1.08<!--/fig--> x raw libvirt

``<!--fig RESULT PATH [SPEC]-->value<!--/fig-->``: RESULT is a file stem, PATH a dotted path
into its JSON (``runs.db=mariadb.at_target.latency_ms.p99`` picks the list element whose
``db`` is ``mariadb``), SPEC an optional ``*factor`` and/or a format spec (``*1000:.0f``),
or ``met`` for a verdict (true: "met", else "**not met**").

:func:`check` (``bench/report.py --check``, run by ``make lint``) fails when a result lacks
its provenance (commit, load), when the README's table or a placeholder is not what the
current results give, or when a figure-like number typed outside placeholders (a decimal,
or a number with ms / s / req/s / % / x) matches no number in any current result: a stale
figure. Figures other than the table's rows, the run's parameters and the profiles' lines
must be placeholders. In bench/README.md every paragraph is checked; in README.md and docs/*.md the
paragraphs that speak of benchmarks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from benchlib import results

FIG = re.compile(r"<!--fig (\S+) (\S+?)(?: (\S+?))?-->(.*?)<!--/fig-->", re.S)
# what is not prose: code blocks, inline code, comments (placeholders are dropped first)
NOT_PROSE = re.compile(r"```.*?```|`[^`\n]*`|<!--.*?-->", re.S)
NUMBER = re.compile(
    r"(?<![\w.\-/:])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s*(req/s|ms|s|%|×|x)(?![\w/]))?")
BENCH_WORDS = re.compile(r"\b(P[1-6]|p9[59]|req/s|raw libvirt|pick-up|click to|benchmark)",
                         re.I)


def other_documents(root: Path = results.BENCH_DIR.parent) -> list[Path]:
    """README.md and docs/*.md: the documents outside bench/ that may quote results."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
            if p.exists()]


# The end-to-end test's measurements (molecule verify writes them), quotable as e2e_<stem>.
E2E_ARTIFACTS = results.BENCH_DIR.parent / "molecule" / "default" / "artifacts"


def load_results(results_dir: Path = results.RESULTS_DIR,
                 e2e_dir: Path | None = E2E_ARTIFACTS) -> dict[str, Any]:
    """Every result by file stem, and the e2e artifacts' JSON as ``e2e_<stem>``."""
    res = {p.stem: json.loads(p.read_text(encoding="utf-8"))
           for p in sorted(results_dir.glob("*.json"))}
    if e2e_dir is not None:
        res.update({f"e2e_{p.stem}": json.loads(p.read_text(encoding="utf-8"))
                    for p in sorted(e2e_dir.glob("*.json"))})
    return res


_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list):
            if "=" in part:
                key, _, want = part.partition("=")
                data = next((x for x in data if isinstance(x, dict)
                             and str(x.get(key)) == want), _MISSING)
            else:
                data = data[int(part)] if part.isdigit() and int(part) < len(data) else _MISSING
        elif isinstance(data, dict):
            data = data.get(part, _MISSING)
        else:
            data = _MISSING
        if data is _MISSING:
            raise KeyError(path)
    return data


def render(res: dict[str, Any], name: str, path: str, spec: str | None) -> str:
    """The text of one placeholder."""
    if name not in res:
        raise KeyError(f"no result file {name}.json")
    try:
        value = _lookup(res[name], path)
    except KeyError:
        raise KeyError(f"{name}.json has no {path}") from None
    if spec == "met":  # a verdict: true/false
        return "met" if value is True else "**not met**"
    if value is None:
        return "none"
    spec = spec or ""
    factor, _, fmt = spec.partition(":") if spec.startswith("*") else ("", "", spec)
    if factor:
        value = float(value) * float(factor[1:])
    return format(value, fmt) if fmt else str(value)


def fill(text: str, res: dict[str, Any], missing: list[str] | None = None) -> str:
    """``text`` with every placeholder rewritten from ``res``. A placeholder whose result is
    missing raises KeyError, or with ``missing`` is left as it is and noted there."""

    def one(m: re.Match[str]) -> str:
        try:
            value = render(res, m[1], m[2], m[3])
        except KeyError as exc:
            if missing is None:
                raise
            missing.append(str(exc))
            return m[0]
        return f"<!--fig {m[1]} {m[2]}{' ' + m[3] if m[3] else ''}-->{value}<!--/fig-->"

    return FIG.sub(one, text)


def fill_all(results_dir: Path, docs: Iterable[Path]) -> None:
    res = load_results(results_dir)
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        missing: list[str] = []
        new = fill(text, res, missing)
        for what in missing:
            print(f"{doc}: placeholder left as it was: {what}")
        if new != text:
            doc.write_text(new, encoding="utf-8")


def _numbers(value: Any) -> Iterator[float | str]:
    """Every number in a result: values (floats), and numbers written inside strings (as
    written: "0.8" in a profile must not vouch for a typed "0.80")."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, str):
        for m in re.finditer(r"\d+(?:\.\d+)?", value):
            yield m[0]
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def _quotable(data: Any) -> Any:
    """What prose may quote without a placeholder: the table's rows (values and targets),
    the run's parameters, machine and provenance. Other figures of a result (samples,
    ladder steps, internal summaries) go through placeholders: hundreds of numbers would
    vouch for almost any typed figure."""
    if not isinstance(data, dict):
        return []
    if "rows" not in data and "env" not in data:  # an e2e artifact: all of it
        return data
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    return [data.get("rows"), data.get("params"), env.get("machine"), data.get("provenance")]


def _known(res: dict[str, Any], results_dir: Path) -> set[str]:
    """The numbers prose may type (rows, parameters, and the profiles as written)."""
    out: set[str] = set()
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(results_dir.glob("*_profile_*.txt"))]
    for n in _numbers([[_quotable(d) for d in res.values()], texts]):
        if isinstance(n, str):
            out.add(n)
        else:
            out.update(f"{n:.{digits}f}" for digits in range(4))
    return out


def stray_figures(text: str, known: set[str], all_paragraphs: bool) -> list[str]:
    """Figure-like numbers typed in ``text`` outside placeholders that no result holds."""
    if results.BEGIN in text and results.END in text:  # the generated table is not prose
        head, rest = text.split(results.BEGIN, 1)
        text = head + rest.split(results.END, 1)[1]
    text = NOT_PROSE.sub(" ", FIG.sub(" ", text))
    stray = []
    for para in re.split(r"\n\s*\n", text):
        if not all_paragraphs and not BENCH_WORDS.search(para):
            continue
        for m in NUMBER.finditer(para):
            whole, frac, unit = m[1].replace(",", ""), m[2] or "", m[3]
            if not frac and not unit:
                continue  # a count, a version, a year: not a measured figure
            if f"{whole}{frac}" not in known:
                snippet = para[max(0, m.start() - 40):m.end() + 20].replace("\n", " ")
                stray.append(f"{m[0].strip()!r} in '...{snippet.strip()}...'")
    return stray


def unrecorded(results_dir: Path = results.RESULTS_DIR) -> list[str]:
    """Results saved before results.save stamped their commit and load (provenance)."""
    out = []
    for name, data in load_results(results_dir, e2e_dir=None).items():
        prov = data.get("provenance") if isinstance(data, dict) else None
        if not isinstance(prov, dict) or prov.get("commit") in (None, "", "unknown") \
                or "load_start" not in prov or "load_end" not in prov:
            out.append(f"results/{name}.json records no commit and load (provenance): "
                       "re-run it with the current bench/")
    return out


def check(results_dir: Path = results.RESULTS_DIR, readme: Path = results.README,
          docs: Iterable[Path] | None = None, strict: bool = True) -> list[str]:
    """Problems that make the documents disagree with the current results (empty: none).

    ``strict``: a result without provenance is a problem too (else the caller warns)."""
    problems = unrecorded(results_dir) if strict else []
    res = load_results(results_dir)
    known = _known(res, results_dir)
    for doc in [readme, *(other_documents() if docs is None else docs)]:
        text = doc.read_text(encoding="utf-8")
        if doc == readme:
            try:
                if results.with_table(text, results_dir, str(doc)) != text:
                    problems.append(f"{doc.name}: the results table is not the current one "
                                    "(run bench/report.py)")
            except ValueError as exc:
                problems.append(str(exc))
        try:
            if fill(text, res) != text:
                problems.append(f"{doc}: a figure is not the current result "
                                "(run bench/report.py)")
        except KeyError as exc:
            problems.append(f"{doc}: placeholder for a missing result: {exc}")
        for stray in stray_figures(text, known, all_paragraphs=doc == readme):
            problems.append(f"{doc}: figure in no current result: {stray}")
    return problems
