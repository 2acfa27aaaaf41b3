"""Analytics against real Kafka and Postgres: known figures, exactly-once across restarts
and replays from offset 0, the API's edges and the Prometheus figures."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.analytics.handlers import count_outcomes
from services.analytics.postgres_repository import PostgresAnalytics
from services.analytics.service import handler_config
from shared.db import create_pool
from shared.settings import CommonSettings
from tests.support.analytics import (
    analytics_settings,
    running_analytics,
    seed_webhooks,
    wait_total,
)
from tests.support.api import db_key
from tests.support.events import Outcome, failed, processed, publish_events, rejected
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.processes import ROOT, ServiceProcess, env_for

pytestmark = pytest.mark.integration

ACC = 0.01


def exact_quantile(values: list[float], q: float) -> float:
    """What DDSketch estimates: the value at rank floor(q * (n - 1)) of the sorted values."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def within_accuracy(estimate: float | None, true: float) -> bool:
    return estimate is not None and abs(estimate - true) <= ACC * true + 0.01  # + rounding


def scripted(ws: uuid.UUID, a: uuid.UUID, b: uuid.UUID, now: datetime) -> list[Outcome]:
    """Webhook a: 100 outcomes taking 1..100 ms (80 processed, 15 failed, 5 rejected) over
    the last 3 minutes. Webhook b: 10 processed at 200 ms, and one 25 hours old."""
    events: list[Outcome] = []
    matches = ["new"] * 40 + ["phone"] * 20 + ["email"] * 15 + ["crm_id"] * 5
    for i in range(1, 101):
        at = now - timedelta(minutes=i % 3, seconds=i % 7)
        if i <= 80:
            events.append(
                processed(ws, a, duration_ms=float(i), match_type=matches[i - 1], received_at=at)
            )
        elif i <= 95:
            kind = "database_error" if i <= 90 else "timeout"
            message = "could not write contact for +15555550100"  # scrubbed before shown
            events.append(
                failed(
                    ws, a, duration_ms=float(i), error_type=kind, message=message, received_at=at
                )
            )
        else:
            events.append(rejected(ws, a, duration_ms=float(i), received_at=at))
    for _ in range(10):
        events.append(processed(ws, b, duration_ms=200.0, match_type="phone", received_at=now))
    events.append(processed(ws, b, duration_ms=200.0, received_at=now - timedelta(hours=25)))
    return events


async def test_known_input_gives_known_figures(settings: CommonSettings) -> None:
    ws, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await seed_webhooks(settings.database_url, ws, "Acme Solar", {a: "LeadConduit", b: "Facebook"})
    now = datetime.now(UTC)
    await publish_events(settings, scripted(ws, a, b, now))

    async with running_analytics(analytics_settings(settings)) as svc:
        body = await wait_total(svc, a, 100)
        await wait_total(svc, b, 11)
        m = body["metrics"]
        assert body["webhook_id"] == str(a) and body["name"] == "LeadConduit"
        assert (
            m["total_requests"],
            m["successful_requests"],
            m["failed_requests"],
            m["rejected_requests"],
        ) == (100, 80, 15, 5)
        assert m["success_rate"] == 80.0 and m["error_rate"] == 20.0
        assert m["average_processing_time"] == 50.5
        durations = [float(i) for i in range(1, 101)]
        for q, key in (
            (0.5, "p50_processing_time"),
            (0.95, "p95_processing_time"),
            (0.99, "p99_processing_time"),
        ):
            assert within_accuracy(m[key], exact_quantile(durations, q)), (key, m[key])
        assert m["percentile_relative_accuracy"] == ACC
        assert m["last_24h"] == {
            "requests": 100,
            "successful_requests": 80,
            "failed_requests": 15,
            "rejected_requests": 5,
            "success_rate": 80.0,
            "avg_processing_time": 50.5,
        }
        assert m["by_error_type"] == {"database_error": 10, "timeout": 5, "validation_failed": 5}
        assert m["by_match_type"] == {"new": 40, "phone": 20, "email": 15, "crm_id": 5}
        assert m["step_averages"] == {
            "authentication": 1.0,
            "duplicate_check": 4.0,
            "field_mapping": 2.0,
            "validation": 2.0,
        }
        assert len(body["recent_errors"]) == 10  # newest first, capped
        assert all("+1555" not in e["message"] for e in body["recent_errors"])

        status, wsb = await svc.get(f"/analytics/workspaces/{ws}")
        assert status == 200 and wsb["name"] == "Acme Solar"
        wm = wsb["metrics"]
        assert (wm["total_requests"], wm["successful_requests"]) == (111, 91)
        assert wm["last_24h"]["requests"] == 110
        assert wm["by_match_type"]["phone"] == 30
        all_durations = durations + [200.0] * 11
        for q, key in (
            (0.5, "p50_processing_time"),
            (0.95, "p95_processing_time"),
            (0.99, "p99_processing_time"),
        ):
            assert within_accuracy(wm[key], exact_quantile(all_durations, q)), (key, wm[key])
        assert {w["webhook_id"] for w in wsb["webhooks"]} == {str(a), str(b)}

        status, series = await svc.get(
            f"/analytics/webhooks/{a}/timeseries",
            **{"from": (now - timedelta(minutes=10)).isoformat(), "to": now.isoformat()},
        )
        assert status == 200
        assert len(series["buckets"]) == 11
        assert sum(x["requests"] for x in series["buckets"]) == 100
        assert sum(x["failed_requests"] for x in series["buckets"]) == 15

        status, _ = await svc.get(f"/analytics/webhooks/{uuid.uuid4()}")
        assert status == 404
        status, problem = await svc.get("/analytics/webhooks/not-a-uuid")
        assert status == 400 and "webhook_id" in problem["error"]
        status, problem = await svc.get(
            f"/analytics/webhooks/{a}/timeseries", **{"from": "yesterday"}
        )
        assert status == 400
        status, listing = await svc.get("/analytics/workspaces")
        assert status == 200 and listing["workspaces"][0]["workspace_id"] == str(ws)
        status, doc = await svc.get("/openapi.json")
        assert status == 200 and "/analytics/webhooks/{webhook_id}" in doc["paths"]

        async def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            _status, text = await svc.ops_get("/metrics")
            return {
                (s.name, frozenset(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
            }

        labels = {"workspace": str(ws), "webhook": str(a)}
        key = (
            "leadwire_analytics_requests_total",
            frozenset({**labels, "status": "processed"}.items()),
        )
        samples = await eventually(scrape, until=lambda s: s.get(key) == 80, what="metrics scrape")
        p95 = samples[
            (
                "leadwire_analytics_processing_time_ms",
                frozenset({**labels, "quantile": "0.95"}.items()),
            )
        ]
        assert within_accuracy(p95, 95.0)
        assert samples[("leadwire_analytics_last_24h_requests", frozenset(labels.items()))] == 100


async def _snapshot(
    svc: Any, ws: uuid.UUID, wh: uuid.UUID, start: datetime, end: datetime
) -> dict[str, Any]:
    out = {}
    for name, path, params in (
        ("webhook", f"/analytics/webhooks/{wh}", {}),
        ("workspace", f"/analytics/workspaces/{ws}", {}),
        (
            "series",
            f"/analytics/webhooks/{wh}/timeseries",
            {"from": start.isoformat(), "to": end.isoformat()},
        ),
    ):
        status, body = await svc.get(path, **params)
        assert status == 200
        out[name] = body
    return out


def _seen() -> float:
    return sum(
        REGISTRY.get_sample_value("leadwire_analytics_events_total", {"result": r}) or 0.0
        for r in ("counted", "duplicate", "stale")
    )


async def test_restart_redelivery_and_replay_from_zero_change_nothing(
    settings: CommonSettings, unique: str
) -> None:
    ws, wh = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    events: list[Outcome] = []
    for i in range(60):
        at = now - timedelta(minutes=i % 4)
        if i % 10 == 0:
            events.append(failed(ws, wh, duration_ms=300.0 + i, received_at=at))
        elif i % 10 == 1:
            events.append(rejected(ws, wh, received_at=at))
        else:
            events.append(
                processed(ws, wh, duration_ms=20.0 + i, match_type="email", received_at=at)
            )
    first, second = events[:30], events[30:]
    s = analytics_settings(settings)
    seen_before = _seen()

    async with running_analytics(s) as svc:
        await publish_events(settings, first)
        await wait_total(svc, wh, 30)
        await publish_events(settings, first[:10])  # redelivered duplicates
    # Stopped mid-stream; more outcomes (and duplicates) arrive while it is down.
    await publish_events(settings, second + first[10:20])
    async with running_analytics(s) as svc:
        await wait_total(svc, wh, 60)
        await eventually(
            lambda: _async(_seen() - seen_before),
            until=lambda n: n >= 80,
            what="all 80 messages handled",
        )
        before = await _snapshot(svc, ws, wh, now - timedelta(minutes=5), now)
    m = before["webhook"]["metrics"]
    assert (m["total_requests"], m["failed_requests"], m["rejected_requests"]) == (60, 6, 6)

    # A new consumer group reads the topic from offset 0: every event again.
    replay = analytics_settings(settings, analytics_group=f"replay-{unique}")
    seen_before = _seen()
    async with running_analytics(replay) as svc:
        await eventually(
            lambda: _async(_seen() - seen_before), until=lambda n: n >= 80, what="replay handled"
        )
        after = await _snapshot(svc, ws, wh, now - timedelta(minutes=5), now)
    assert after == before

    # And handing the same events straight to the handler twice counts nothing either.
    pool = await create_pool(settings.database_url)
    try:
        cfg = handler_config(replay)
        repo = PostgresAnalytics(pool)
        result = await count_outcomes(events + events, repo=repo, config=cfg, now=datetime.now(UTC))
        assert result.counted == 0 and result.duplicates == 120
        total = await pool.fetchval(
            "SELECT total FROM analytics_webhooks WHERE webhook_id = $1", wh
        )
        assert total == 60
    finally:
        await pool.close()


async def _async(value: float) -> float:
    return value


async def test_kill_9_mid_stream_counts_every_outcome_once(settings: CommonSettings) -> None:
    """SIGKILL the service (a subprocess) while it counts; the restarted one gets the
    uncommitted batches again and the dedupe gate absorbs them: exact totals."""
    ws, wh = uuid.uuid4(), uuid.uuid4()
    events: list[Outcome] = [
        failed(ws, wh) if i % 7 == 0 else processed(ws, wh, duration_ms=10.0 + i % 50)
        for i in range(600)
    ]
    port = free_port()
    env = env_for(
        settings,
        LEADWIRE_ANALYTICS_PORT=str(port),
        LEADWIRE_ANALYTICS_MAX_BATCH="20",  # many small transactions: a kill lands mid-stream
    )
    base = f"http://127.0.0.1:{port}"
    logs = ROOT / "test-output" / "logs"
    key = await db_key(settings.database_url, None, "read")

    async def total() -> int:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            try:
                async with http.get(f"{base}/analytics/webhooks/{wh}") as resp:
                    if resp.status != 200:
                        return 0
                    return int((await resp.json())["metrics"]["total_requests"])
            except aiohttp.ClientError:
                return 0

    first = ServiceProcess("analytics", env, logs).start()
    try:
        await first.wait_ready(f"{settings.ops_url('analytics')}/readyz")
        await publish_events(settings, events)
        counted = await eventually(total, until=lambda n: n >= 40, what="some counted")
        first.kill(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    assert counted < 600, "the kill should land mid-stream"
    second = ServiceProcess("analytics", env, logs).start()
    try:
        await second.wait_ready(f"{settings.ops_url('analytics')}/readyz")
        await eventually(total, until=lambda n: n >= 600, what="all counted")
        status_body = await total()
        assert status_body == 600
        pool = await create_pool(settings.database_url)
        try:
            row = await pool.fetchrow(
                "SELECT total, failed, (SELECT count(*) FROM analytics_counted_events) AS ids"
                " FROM analytics_webhooks WHERE webhook_id = $1",
                wh,
            )
            minutes = await pool.fetchval(
                "SELECT sum(total) FROM analytics_minutes WHERE webhook_id = $1", wh
            )
        finally:
            await pool.close()
        assert (row["total"], row["failed"], row["ids"], minutes) == (600, 86, 600, 600)
    finally:
        second.stop()
