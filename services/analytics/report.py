"""Pure: stored aggregates -> the API's figures (rates, averages, percentiles)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.analytics.schemas import Bucket, Last24h, Metrics
from services.analytics.sketch import Bins, LatencySketch, add_bins


@dataclass
class Totals:
    total: int = 0
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    duration_sum: float = 0.0
    bins: Bins = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> Totals:
        if row is None:
            return cls()
        return cls(
            total=int(row["total"] or 0),
            processed=int(row["processed"] or 0),
            failed=int(row["failed"] or 0),
            rejected=int(row["rejected"] or 0),
            duration_sum=float(row["duration_sum"] or 0.0),
            bins=dict(row.get("sketch") or {}),
        )

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            total=self.total + other.total,
            processed=self.processed + other.processed,
            failed=self.failed + other.failed,
            rejected=self.rejected + other.rejected,
            duration_sum=self.duration_sum + other.duration_sum,
            bins=add_bins(self.bins, other.bins),
        )


@dataclass
class Breakdown:
    """by_error_type / by_match_type counts and per-step [count, sum_ms]."""

    error_types: dict[str, int] = field(default_factory=dict)
    match_types: dict[str, int] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=dict)

    def add(self, dimension: str, name: str, count: int, sum_ms: float) -> None:
        if dimension == "error_type":
            self.error_types[name] = self.error_types.get(name, 0) + count
        elif dimension == "match_type":
            self.match_types[name] = self.match_types.get(name, 0) + count
        elif dimension == "step":
            entry = self.steps.setdefault(name, [0, 0.0])
            entry[0] += count
            entry[1] += sum_ms

    def merge(self, other: Breakdown) -> Breakdown:
        out = Breakdown()
        for b in (self, other):
            for k, v in b.error_types.items():
                out.add("error_type", k, v, 0.0)
            for k, v in b.match_types.items():
                out.add("match_type", k, v, 0.0)
            for k, (c, s) in b.steps.items():
                out.add("step", k, int(c), s)
        return out


def percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def build_metrics(
    totals: Totals, last_24h: Totals, breakdown: Breakdown, *, accuracy: float
) -> Metrics:
    sketch = LatencySketch(accuracy).merge_bins(totals.bins)
    return Metrics(
        total_requests=totals.total,
        successful_requests=totals.processed,
        failed_requests=totals.failed,
        rejected_requests=totals.rejected,
        success_rate=percent(totals.processed, totals.total),
        error_rate=percent(totals.failed + totals.rejected, totals.total),
        average_processing_time=_ms(totals.duration_sum / totals.total if totals.total else None),
        p50_processing_time=_ms(sketch.quantile(0.50)),
        p95_processing_time=_ms(sketch.quantile(0.95)),
        p99_processing_time=_ms(sketch.quantile(0.99)),
        percentile_relative_accuracy=accuracy,
        last_24h=Last24h(
            requests=last_24h.total,
            successful_requests=last_24h.processed,
            failed_requests=last_24h.failed,
            rejected_requests=last_24h.rejected,
            success_rate=percent(last_24h.processed, last_24h.total),
            avg_processing_time=_ms(
                last_24h.duration_sum / last_24h.total if last_24h.total else None
            ),
        ),
        by_error_type=dict(sorted(breakdown.error_types.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_match_type=dict(sorted(breakdown.match_types.items(), key=lambda kv: (-kv[1], kv[0]))),
        step_averages={
            name: round(s / c, 2) for name, (c, s) in sorted(breakdown.steps.items()) if c
        },
    )


def window_start(now: datetime, minutes: int) -> datetime:
    """First minute of a rolling window of ``minutes`` minutes ending with ``now``'s minute."""
    current = now.replace(second=0, microsecond=0)
    return current - timedelta(minutes=minutes - 1)


def buckets(
    rows: Iterable[Mapping[str, Any]], start: datetime, end: datetime, *, accuracy: float
) -> list[Bucket]:
    """Per-minute buckets from ``start`` to ``end`` inclusive, empty minutes filled in."""
    by_minute = {row["minute"]: row for row in rows}
    out: list[Bucket] = []
    minute = start.replace(second=0, microsecond=0)
    while minute <= end:
        row = by_minute.get(minute)
        t = Totals.from_row(row)
        p95 = LatencySketch(accuracy).merge_bins(t.bins).quantile(0.95) if t.total else None
        out.append(
            Bucket(
                minute=minute,
                requests=t.total,
                successful_requests=t.processed,
                failed_requests=t.failed,
                rejected_requests=t.rejected,
                success_rate=percent(t.processed, t.total),
                avg_processing_time=_ms(t.duration_sum / t.total if t.total else None),
                p95_processing_time=_ms(p95),
            )
        )
        minute += timedelta(minutes=1)
    return out
