"""Analytics' Prometheus metrics: its own counters, and the figures per webhook and
workspace with bounded label cardinality.

A custom collector serves the latest snapshot read from Postgres (refreshed every few
seconds by the service), so ``/metrics`` never queries the database and label sets never
grow without bound: the ``max_webhooks`` most recently active webhooks get their own
labels, every other webhook is summed under ``workspace="other", webhook="other"``.
Figures come from Postgres, so every replica reports the same (whole-system) numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from services.analytics.repository import AnalyticsRepository
from services.analytics.sketch import LatencySketch
from services.analytics.vendors import REASONS

EVENTS = Counter(
    "leadwire_analytics_events_total",
    "Outcome events seen by analytics: counted, duplicate (already counted) or stale",
    ["result"],
)
ALERTS = Counter(
    "leadwire_analytics_alerts_published_total", "Performance alert events published", ["state"]
)
DEADLETTERS = Counter(
    "leadwire_analytics_deadletters_seen_total",
    "Dead letters seen by analytics: counted, duplicate (already counted), stale or skipped",
    ["result"],
)

OTHER = "other"
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Row:
    workspace: str
    webhook: str
    total: int
    processed: int
    failed: int
    rejected: int
    duration_sum: float
    quantiles: dict[float, float] = field(default_factory=dict)
    day_total: int | None = None
    day_processed: int | None = None


@dataclass(frozen=True)
class VendorRow:
    """A webhook's scorecard over the last 24 h (summed columns of
    analytics_vendor_minutes; speed-to-lead quantiles in seconds, labelled webhooks only)."""

    workspace: str
    webhook: str
    counts: dict[str, int]
    speed: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    rows: list[Row]
    firing: list[tuple[str, str, str]]
    webhooks: int
    # (workspace, webhook, count): the labelled webhooks' dead letters, the rest as "other".
    deadletters: list[tuple[str, str, int]] = field(default_factory=list)
    vendors: list[VendorRow] = field(default_factory=list)


async def read_snapshot(
    repo: AnalyticsRepository, *, max_webhooks: int, accuracy: float, since: datetime
) -> Snapshot:
    """Every figure of a scrape, read in one snapshot of the repository."""
    async with repo.snapshot() as snap:
        return await _read(snap, max_webhooks=max_webhooks, accuracy=accuracy, since=since)


async def _read(
    repo: AnalyticsRepository, *, max_webhooks: int, accuracy: float, since: datetime
) -> Snapshot:
    top, rest, alerts = await repo.metrics_rows(max_webhooks, since)
    rows: list[Row] = []
    for r in top:
        sketch = LatencySketch(accuracy).merge_bins(r["sketch"])
        rows.append(
            Row(
                workspace=str(r["workspace_id"]),
                webhook=str(r["webhook_id"]),
                total=r["total"],
                processed=r["processed"],
                failed=r["failed"],
                rejected=r["rejected"],
                duration_sum=r["duration_sum"],
                quantiles={q: v for q in QUANTILES if (v := sketch.quantile(q)) is not None},
                day_total=int(r["day_total"]),
                day_processed=int(r["day_processed"]),
            )
        )
    labelled = {row.webhook for row in rows}
    others = rest["webhooks"]
    if others:
        rows.append(
            Row(
                workspace=OTHER,
                webhook=OTHER,
                total=rest["total"],
                processed=rest["processed"],
                failed=rest["failed"],
                rejected=rest["rejected"],
                duration_sum=rest["duration_sum"],
            )
        )
    firing = [
        (str(a["workspace_id"]), str(a["webhook_id"]), a["metric"])
        if str(a["webhook_id"]) in labelled
        else (OTHER, OTHER, a["metric"])
        for a in alerts
    ]
    # Dead letters: the webhooks with the most get their own labels (as many as above).
    dead, total = await repo.deadletter_top(max_webhooks)
    deadletters = [(str(ws) if ws else OTHER, str(wh), n) for ws, wh, n in dead]
    unlabelled = total - sum(n for *_, n in dead)
    if unlabelled:
        deadletters.append((OTHER, OTHER, unlabelled))
    return Snapshot(
        rows=rows,
        firing=firing,
        webhooks=len(top) + others,
        deadletters=deadletters,
        vendors=await _vendor_rows(repo, {r["webhook_id"]: r["workspace_id"] for r in top}, since),
    )


async def _vendor_rows(
    repo: AnalyticsRepository, labelled: dict[uuid.UUID, uuid.UUID], since: datetime
) -> list[VendorRow]:
    """The scorecards since ``since`` of the labelled webhooks (workspace of each), every
    other webhook summed under "other"."""
    sums, speeds = await repo.vendor_metrics(list(labelled), since)
    out: list[VendorRow] = []
    for webhook, counts in sums.items():
        if webhook is None:
            out.append(VendorRow(OTHER, OTHER, counts))
            continue
        speed = speeds.get(webhook, {})
        out.append(
            VendorRow(
                str(labelled[webhook]),
                str(webhook),
                counts,
                {q: float(speed[k]) for q, k in ((0.5, "p50"), (0.95, "p95")) if k in speed},
            )
        )
    return out


class AnalyticsCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> list[Metric]:
        # Nothing to pre-declare; collect() is served from the in-memory snapshot.
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        labels = ["workspace", "webhook"]
        requests = CounterMetricFamily(
            "leadwire_analytics_requests",
            "Requests counted per webhook by outcome",
            labels=[*labels, "status"],
        )
        timing = SummaryMetricFamily(
            "leadwire_analytics_processing_time_ms",
            "Processing time (processing.duration_ms); quantiles from DDSketch",
            labels=labels,
        )
        success = GaugeMetricFamily(
            "leadwire_analytics_success_ratio", "processed / total (all time)", labels=labels
        )
        errors = GaugeMetricFamily(
            "leadwire_analytics_error_ratio",
            "(failed + rejected) / total (all time)",
            labels=labels,
        )
        day = GaugeMetricFamily(
            "leadwire_analytics_last_24h_requests", "Requests in the last 24 hours", labels=labels
        )
        day_success = GaugeMetricFamily(
            "leadwire_analytics_last_24h_success_ratio",
            "processed / total, last 24 hours",
            labels=labels,
        )
        for row in snap.rows:
            lv = [row.workspace, row.webhook]
            requests.add_metric([*lv, "processed"], row.processed)
            requests.add_metric([*lv, "failed"], row.failed)
            requests.add_metric([*lv, "rejected"], row.rejected)
            timing.add_metric(lv, count_value=row.total, sum_value=row.duration_sum)
            for q, v in row.quantiles.items():
                timing.samples.append(
                    Sample(
                        timing.name, {"workspace": lv[0], "webhook": lv[1], "quantile": str(q)}, v
                    )
                )
            if row.total:
                success.add_metric(lv, row.processed / row.total)
                errors.add_metric(lv, (row.failed + row.rejected) / row.total)
            if row.day_total is not None:
                day.add_metric(lv, row.day_total)
                if row.day_total and row.day_processed is not None:
                    day_success.add_metric(lv, row.day_processed / row.day_total)
        firing = GaugeMetricFamily(
            "leadwire_analytics_alert_firing",
            "Performance alerts firing",
            labels=[*labels, "metric"],
        )
        counted: dict[tuple[str, str, str], int] = {}
        for key in snap.firing:
            counted[key] = counted.get(key, 0) + 1
        for (ws, wh, metric), n in counted.items():
            firing.add_metric([ws, wh, metric], n)
        tracked = GaugeMetricFamily("leadwire_analytics_webhooks", "Webhooks with counted outcomes")
        tracked.add_metric([], snap.webhooks)
        dead = GaugeMetricFamily(
            "leadwire_analytics_deadletters",
            "Dead letters of each webhook's messages (within the dedupe horizon)",
            labels=labels,
        )
        for ws, wh, n in snap.deadletters:
            dead.add_metric([ws, wh], n)
        yield from (requests, timing, success, errors, day, day_success, firing, tracked, dead)
        yield from vendor_families(snap.vendors)


def vendor_families(rows: list[VendorRow]) -> Iterator[Metric]:
    """The vendor scorecards' last 24 h: leads by outcome, rejections by reason (the fixed
    set of :data:`~services.analytics.vendors.REASONS`), new contacts, speed-to-lead."""
    labels = ["workspace", "webhook"]
    prefix = "leadwire_analytics_vendor_last_24h_"
    simple = {
        column: GaugeMetricFamily(prefix + column, help_text, labels=labels)
        for column, help_text in (
            ("received", "Leads received per webhook (accepted + failed + rejected), last 24 h"),
            ("accepted", "Leads accepted (processed) per webhook, last 24 h"),
            ("failed", "Leads accepted by the gateway that could not be processed, last 24 h"),
            ("new_contacts", "Accepted leads that created a contact, last 24 h"),
        )
    }
    rejected = GaugeMetricFamily(
        prefix + "rejected",
        "Leads rejected per webhook by reason, last 24 h",
        labels=[*labels, "reason"],
    )
    speed = GaugeMetricFamily(
        prefix + "speed_to_lead_seconds",
        "Lead received -> first email or SMS sent (exact quantile), last 24 h",
        labels=[*labels, "quantile"],
    )
    for row in rows:
        lv = [row.workspace, row.webhook]
        for column, family in simple.items():
            family.add_metric(lv, row.counts.get(column, 0))
        for reason in REASONS:
            rejected.add_metric([*lv, reason], row.counts.get(f"rejected_{reason}", 0))
        for q, seconds in row.speed.items():
            speed.add_metric([*lv, str(q)], seconds)
    yield from (*simple.values(), rejected, speed)
