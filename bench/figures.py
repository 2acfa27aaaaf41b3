"""A benchmark's figures: the rows ``make bench`` prints, and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def figure(benchmark: str, metric: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    """One row of ``make bench``'s table."""
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit, "note": note}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by rank; NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
