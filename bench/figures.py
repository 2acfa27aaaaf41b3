"""A benchmark's figures: the rows ``make bench`` prints, and percentiles.

A row may also be a *cell* of a named table (``table``, ``row``, ``column``): ``make bench``
then prints that table as well (:mod:`bench.report`), in the shape an issue quotes it, and
draws a chart of it where one is defined (:mod:`bench.charts`). A *caption* row is a line
printed under its table only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def figure(benchmark: str, metric: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    """One row of ``make bench``'s table."""
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit, "note": note}


def cell(
    benchmark: str,
    table: str,
    row: str,
    column: str,
    value: float,
    unit: str,
    note: str = "",
) -> dict[str, Any]:
    """A row of ``make bench``'s table that is also the cell (row, column) of ``table``."""
    return {
        **figure(benchmark, f"{row}: {column}", value, unit, note),
        "table": table,
        "row": row,
        "column": column,
    }


def caption(benchmark: str, table: str, text: str) -> dict[str, Any]:
    """A line printed under ``table`` (not a row of the figures)."""
    return {**figure(benchmark, "", 0.0, "", text), "table": table, "caption": True}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by rank; NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
