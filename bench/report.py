#!/usr/bin/env python3
"""Rewrite the results table of bench/README.md from bench/results/*.json (and print it)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import results  # noqa: E402

if __name__ == "__main__":
    results.render_readme()
    print(results.table())
