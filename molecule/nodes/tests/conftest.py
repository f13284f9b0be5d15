"""The nodes scenario's tests reuse molecule/default's end-to-end helpers (``e2e``) by import."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_TESTS = Path(__file__).resolve().parents[2] / "default" / "tests"
if str(DEFAULT_TESTS) not in sys.path:
    sys.path.insert(0, str(DEFAULT_TESTS))
