#!/usr/bin/env python3
"""The results table and the figures quoted in the docs, from bench/results/*.json.

    bench/report.py           # rewrite bench/README.md's table and every <!--fig--> figure
    bench/report.py --check   # fail when a document disagrees with the current results
                              # (make lint runs it with --strict): see benchlib/prose.py
    bench/report.py --restamp # results saved before provenance existed: stamp it from
                              # the commit and loads the file itself recorded
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import prose, results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 listing stale tables or figures")
    p.add_argument("--strict", action="store_true",
                   help="with --check: a result without commit and load fails too")
    p.add_argument("--restamp", action="store_true",
                   help="stamp the provenance of old results from their own commit and loads")
    args = p.parse_args(argv)
    if args.restamp:
        for name in results.restamp():
            print(f"stamped {name}")
    if args.check:
        if not args.strict:
            for old in prose.unrecorded():
                print(f"bench/report.py --check: warning: {old}", file=sys.stderr)
        problems = prose.check(strict=args.strict)
        for problem in problems:
            print(f"bench/report.py --check: {problem}", file=sys.stderr)
        if problems:
            print("Re-run the benchmark, or bench/report.py, or quote the figure with a "
                  "<!--fig RESULT PATH SPEC--> placeholder.", file=sys.stderr)
        return 1 if problems else 0
    results.render_readme()
    print(results.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
