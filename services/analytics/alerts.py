"""Pure: when does a webhook's error rate or p95 time cross its threshold, and back.

An alert fires once per crossing: the state (firing or not, and the crossing count
``seq``) lives in Postgres next to the counts, so a batch that leaves a firing webhook
above its threshold publishes nothing, and a replay (which counts nothing new) evaluates
nothing. Each event id is ``uuid5(webhook, metric, seq, state)``: publishing the same
transition twice (a crash between commit and publish) gives the notifier the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.analytics.sketch import LatencySketch
from shared.events import PerformanceAlert

Metric = Literal["error_rate", "p95_processing_time"]
METRICS: tuple[Metric, ...] = ("error_rate", "p95_processing_time")

# Never change it: alert ids derived from it are what the notifier dedupes on.
_NAMESPACE = uuid.UUID("3b1f6a52-7f0e-4d7c-9a59-0c2f4a8e9d61")


@dataclass(frozen=True)
class Thresholds:
    error_rate_percent: float
    p95_ms: float
    min_requests: int
    window_minutes: int
    enabled: bool = True

    def threshold(self, metric: Metric) -> float:
        return self.error_rate_percent if metric == "error_rate" else self.p95_ms


@dataclass(frozen=True)
class WindowStats:
    """Requests in the alert window, those that failed or were rejected, and their p95."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class AlertState:
    firing: bool = False
    seq: int = 0


@dataclass(frozen=True)
class Transition:
    metric: Metric
    state: AlertState
    value: float
    threshold: float
    event: PerformanceAlert


def alert_event_id(webhook_id: uuid.UUID, metric: str, seq: int, state: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"alert:{webhook_id}:{metric}:{seq}:{state}")


def measure(metric: Metric, stats: WindowStats, thresholds: Thresholds) -> tuple[bool, float]:
    """(breaching, value): too few requests in the window never breaches."""
    value = stats.error_rate if metric == "error_rate" else (stats.p95_ms or 0.0)
    if not thresholds.enabled or stats.requests < thresholds.min_requests:
        return False, value
    return value > thresholds.threshold(metric), value


def decide(
    *,
    webhook_id: uuid.UUID,
    workspace_id: uuid.UUID,
    metric: Metric,
    state: AlertState,
    stats: WindowStats,
    thresholds: Thresholds,
    now: datetime,
) -> Transition | None:
    """The transition to record and publish, or None when the state stays as it is."""
    breaching, value = measure(metric, stats, thresholds)
    if breaching == state.firing:
        return None
    new = AlertState(firing=breaching, seq=state.seq + 1 if breaching else state.seq)
    label: Literal["firing", "resolved"] = "firing" if breaching else "resolved"
    threshold = thresholds.threshold(metric)
    event = PerformanceAlert(
        event_id=alert_event_id(webhook_id, metric, new.seq, label),
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        metric=metric,
        value=round(value, 3),
        threshold=threshold,
        state=label,
        occurred_at=now,
    )
    return Transition(metric=metric, state=new, value=value, threshold=threshold, event=event)


def with_overrides(defaults: Thresholds, row: Mapping[str, Any]) -> Thresholds:
    """A webhook's thresholds: its own where set (not NULL), else the defaults."""

    def pick(name: str, default: Any) -> Any:
        return default if row.get(name) is None else row[name]

    return Thresholds(
        error_rate_percent=pick("error_rate_percent", defaults.error_rate_percent),
        p95_ms=pick("p95_ms", defaults.p95_ms),
        min_requests=pick("min_requests", defaults.min_requests),
        window_minutes=pick("window_minutes", defaults.window_minutes),
        enabled=pick("enabled", defaults.enabled),
    )


def window_stats(
    starts: Mapping[uuid.UUID, datetime],
    minutes: Iterable[Mapping[str, Any]],
    *,
    accuracy: float,
) -> dict[uuid.UUID, WindowStats]:
    """Sum minute rows (webhook_id, minute, total, failed, rejected, sketch) from each
    webhook's own window start on."""
    acc: dict[uuid.UUID, tuple[int, int, LatencySketch]] = {
        w: (0, 0, LatencySketch(accuracy)) for w in starts
    }
    for r in minutes:
        w = r["webhook_id"]
        if w not in starts or r["minute"] < starts[w]:
            continue
        total, errors, sketch = acc[w]
        sketch.merge_bins(r["sketch"])
        acc[w] = (total + r["total"], errors + r["failed"] + r["rejected"], sketch)
    return {
        w: WindowStats(requests=t, errors=e, p95_ms=s.quantile(0.95))
        for w, (t, e, s) in acc.items()
    }
