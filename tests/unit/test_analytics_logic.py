"""Analytics pure logic: sketch accuracy and encoding, aggregation, alerts, figures."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.analytics.aggregate import aggregate, minute_of
from services.analytics.alerts import AlertState, Thresholds, WindowStats, alert_event_id, decide
from services.analytics.api import openapi_document
from services.analytics.metrics import AnalyticsCollector, Row, Snapshot
from services.analytics.report import Breakdown, Totals, buckets, build_metrics, window_start
from services.analytics.sketch import LatencySketch, add_bins, merged
from services.analytics.stream import Hub
from shared.events import decode_alert, encode
from tests.support.events import failed, processed, rejected

pytestmark = pytest.mark.unit

ACC = 0.01
WS = uuid.UUID("00000000-0000-4000-8000-000000000001")
WH = uuid.UUID("00000000-0000-4000-8000-000000000002")


def exact_quantile(values: list[float], q: float) -> float:
    """The value DDSketch estimates: the one at rank floor(q * (n - 1)) of the sorted values."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sketch_quantiles_within_relative_accuracy(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(3.5, 1.0) for _ in range(5000)]
    sketch = LatencySketch(ACC).add_all(values)
    for q in (0.5, 0.95, 0.99):
        est = sketch.quantile(q)
        assert est is not None
        true = exact_quantile(values, q)
        assert abs(est - true) <= ACC * true + 1e-9, (q, est, true)


def test_sketch_bins_round_trip_and_merge_by_addition() -> None:
    a_vals = [float(v) for v in range(1, 501)]
    b_vals = [float(v) * 3 for v in range(1, 301)] + [0.0, 0.0]
    a = LatencySketch(ACC).add_all(a_vals)
    b = LatencySketch(ACC).add_all(b_vals)
    both = merged(ACC, [a.to_bins(), b.to_bins()])
    direct = LatencySketch(ACC).add_all(a_vals + b_vals)
    assert both.to_bins() == direct.to_bins() == add_bins(a.to_bins(), b.to_bins())
    assert both.count == len(a_vals) + len(b_vals)
    assert both.to_bins()["z"] == 2.0
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert both.quantile(q) == direct.quantile(q)


def test_empty_sketch_has_no_quantile() -> None:
    assert LatencySketch(ACC).quantile(0.5) is None
    assert LatencySketch(ACC).merge_bins({}).quantile(0.99) is None


def test_aggregate_counts_minutes_breakdowns_and_scrubs_errors() -> None:
    t0 = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
    events = [
        processed(WS, WH, duration_ms=10, match_type="phone", received_at=t0),
        processed(WS, WH, duration_ms=20, match_type="new", received_at=t0 + timedelta(seconds=40)),
        failed(
            WS,
            WH,
            duration_ms=100,
            error_type="database_error",
            message="could not write contact for +15555550100",
            received_at=t0 + timedelta(seconds=10),
        ),
        rejected(WS, WH, duration_ms=2, received_at=t0 + timedelta(minutes=2)),
    ]
    deltas = aggregate(events, accuracy=ACC)
    d = deltas[WH]
    assert (d.counts.total, d.counts.processed, d.counts.failed, d.counts.rejected) == (4, 2, 1, 1)
    assert d.counts.duration_sum == pytest.approx(132.0)
    assert sorted(d.minutes) == [
        minute_of(t0),
        minute_of(t0) + timedelta(minutes=1),
        minute_of(t0) + timedelta(minutes=2),
    ]
    assert d.minutes[minute_of(t0)].total == 2
    assert d.breakdowns[("match_type", "phone")] == [1, 0.0]
    assert d.breakdowns[("error_type", "database_error")][0] == 1
    assert d.breakdowns[("error_type", "validation_failed")][0] == 1
    assert d.breakdowns[("step", "authentication")] == [4, 4.0]
    assert d.first_seen == t0 and d.last_seen == t0 + timedelta(minutes=2)
    fail = next(e for e in d.errors if e.status == "failed")
    assert "+15555550100" not in fail.message and "[redacted]" in fail.message
    rej = next(e for e in d.errors if e.status == "rejected")
    assert rej.message == "HTTP 400: phone: invalid_phone"


def test_build_metrics_shape_rates_and_empty() -> None:
    sketch = LatencySketch(ACC).add_all([10.0] * 9 + [100.0])
    totals = Totals(
        total=10, processed=8, failed=1, rejected=1, duration_sum=190.0, bins=sketch.to_bins()
    )
    b = Breakdown()
    b.add("match_type", "phone", 5, 0)
    b.add("error_type", "database_error", 1, 0)
    b.add("step", "validation", 10, 25.0)
    m = build_metrics(totals, totals, b, accuracy=ACC).model_dump()
    assert m["total_requests"] == 10 and m["successful_requests"] == 8
    assert m["success_rate"] == 80.0 and m["error_rate"] == 20.0
    assert m["average_processing_time"] == 19.0
    assert m["p50_processing_time"] == pytest.approx(10, rel=ACC)
    assert m["p99_processing_time"] == pytest.approx(10, rel=ACC)  # rank floor(0.99*9) = 8
    assert m["last_24h"]["requests"] == 10 and m["last_24h"]["success_rate"] == 80.0
    assert m["by_match_type"] == {"phone": 5}
    assert m["step_averages"] == {"validation": 2.5}
    empty = build_metrics(Totals(), Totals(), Breakdown(), accuracy=ACC).model_dump()
    assert empty["total_requests"] == 0
    assert empty["success_rate"] is None and empty["p95_processing_time"] is None


def test_buckets_fill_empty_minutes() -> None:
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "minute": start + timedelta(minutes=1),
            "total": 4,
            "processed": 3,
            "failed": 1,
            "rejected": 0,
            "duration_sum": 40.0,
            "sketch": LatencySketch(ACC).add_all([10, 10, 10, 10]).to_bins(),
        }
    ]
    out = buckets(rows, start, start + timedelta(minutes=2), accuracy=ACC)
    assert [b.requests for b in out] == [0, 4, 0]
    assert out[1].success_rate == 75.0 and out[1].avg_processing_time == 10.0
    assert out[1].p95_processing_time == pytest.approx(10, rel=ACC)
    assert out[0].success_rate is None
    assert window_start(start + timedelta(seconds=59), 5) == start - timedelta(minutes=4)


TH = Thresholds(error_rate_percent=10.0, p95_ms=1000.0, min_requests=20, window_minutes=5)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _decide(state: AlertState, stats: WindowStats, metric: str = "error_rate") -> object:
    return decide(
        webhook_id=WH,
        workspace_id=WS,
        metric=metric,  # type: ignore[arg-type]
        state=state,
        stats=stats,
        thresholds=TH,
        now=NOW,
    )


def test_alert_fires_once_per_crossing_and_resolves() -> None:
    assert _decide(AlertState(), WindowStats(19, 19, 5.0)) is None  # under the minimum
    fired = _decide(AlertState(), WindowStats(20, 3, 5.0))
    assert fired is not None
    assert fired.state == AlertState(firing=True, seq=1)  # type: ignore[attr-defined]
    ev = fired.event  # type: ignore[attr-defined]
    assert ev.state == "firing" and ev.value == 15.0 and ev.threshold == 10.0
    assert ev.event_id == alert_event_id(WH, "error_rate", 1, "firing")
    assert decode_alert(encode(ev)) == ev
    assert _decide(AlertState(True, 1), WindowStats(40, 30, 5.0)) is None  # still above
    resolved = _decide(AlertState(True, 1), WindowStats(100, 10, 5.0))  # exactly 10 %: not above
    assert resolved is not None and resolved.event.state == "resolved"  # type: ignore[attr-defined]
    assert resolved.state == AlertState(False, 1)  # type: ignore[attr-defined]
    again = _decide(AlertState(False, 1), WindowStats(20, 20, 5.0))
    assert again.state.seq == 2  # type: ignore[attr-defined]
    assert again.event.event_id != ev.event_id  # type: ignore[attr-defined]


def test_p95_alert_and_disabled_thresholds() -> None:
    fired = _decide(AlertState(), WindowStats(25, 0, 1500.0), "p95_processing_time")
    assert fired is not None and fired.event.metric == "p95_processing_time"  # type: ignore[attr-defined]
    off = Thresholds(10.0, 1000.0, 20, 5, enabled=False)
    t = decide(
        webhook_id=WH,
        workspace_id=WS,
        metric="p95_processing_time",
        state=AlertState(True, 1),
        stats=WindowStats(25, 0, 1500.0),
        thresholds=off,
        now=NOW,
    )
    assert t is not None and t.event.state == "resolved"


def _key(labels: dict[str, str], **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({**labels, **more}.items())


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_exposes_labelled_figures() -> None:
    registry = CollectorRegistry()
    collector = AnalyticsCollector()
    registry.register(collector)
    assert generate_latest(registry) == b""
    collector.snapshot = Snapshot(
        rows=[
            Row(str(WS), str(WH), 10, 8, 1, 1, 190.0, {0.5: 10.0, 0.95: 99.0, 0.99: 100.0}, 5, 4),
            Row("other", "other", 7, 7, 0, 0, 70.0),
        ],
        firing=[(str(WS), str(WH), "error_rate")],
        webhooks=3,
    )
    samples = parse_samples(generate_latest(registry).decode())
    own = {"workspace": str(WS), "webhook": str(WH)}
    other = {"workspace": "other", "webhook": "other"}
    assert samples[("leadwire_analytics_requests_total", _key(own, status="processed"))] == 8
    assert samples[("leadwire_analytics_processing_time_ms", _key(own, quantile="0.95"))] == 99
    assert samples[("leadwire_analytics_processing_time_ms_count", _key(other))] == 7
    assert samples[("leadwire_analytics_success_ratio", _key(own))] == 0.8
    assert samples[("leadwire_analytics_last_24h_requests", _key(own))] == 5
    assert samples[("leadwire_analytics_alert_firing", _key(own, metric="error_rate"))] == 1
    assert samples[("leadwire_analytics_webhooks", _key({}))] == 3


def test_openapi_document_covers_the_api() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/analytics/webhooks/{webhook_id}",
        "/analytics/webhooks/{webhook_id}/timeseries",
        "/analytics/workspaces/{workspace_id}",
        "/analytics/workspaces/{workspace_id}/stream",
    ):
        assert path in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert {"WebhookAnalytics", "Metrics", "Last24h", "Timeseries", "Bucket"} <= set(schemas)
    assert "p95_processing_time" in schemas["Metrics"]["properties"]
    assert "from" in schemas["Timeseries"]["properties"]


async def test_hub_wakes_only_the_changed_workspace() -> None:
    hub = Hub()
    a, b = hub.subscribe(WS), hub.subscribe(WH)
    hub.notify(WS)
    assert a.changed.is_set() and not b.changed.is_set()
    hub.unsubscribe(a)
    assert hub.subscribers == 1
    hub.close()
    assert b.changed.is_set() and hub.closed
