"""Medians and percentiles (linear interpolation between closest ranks)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values``; NaN for an empty sequence."""
    if not values:
        return math.nan
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    data = sorted(values)
    pos = (len(data) - 1) * pct / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """n, min, median, p95, p99, max and mean of ``values`` (rounded)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "median": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def ratio(a: float, b: float, digits: int = 3) -> float | None:
    """``a / b`` rounded, or None when ``b`` is zero or not a number."""
    if not b or math.isnan(b) or math.isnan(a):
        return None
    return round(a / b, digits)
