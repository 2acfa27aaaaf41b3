"""Performance alerts against real Kafka and Postgres: one event per crossing, none while
above, one on recovery, per-webhook overrides, and none again on a replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.analytics.alerts import alert_event_id
from shared import topics
from shared.events import PerformanceAlert, decode_alert
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, wait_total
from tests.support.events import failed, processed, publish_events
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


async def read_alerts(settings: CommonSettings) -> list[PerformanceAlert]:
    """Every performance alert on the test's alerts topic (in order within a webhook's
    partition); system-health alerts share the topic and are left out."""
    alerts = [decode_alert(v) for v in await read_topic(settings, topics.ALERTS)]
    return [a for a in alerts if isinstance(a, PerformanceAlert)]


async def test_alert_once_per_crossing_then_resolved(settings: CommonSettings, unique: str) -> None:
    ws, noisy, slow = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(settings.database_url)
    try:
        # Per-webhook override: p95 above 500 ms over at least 5 requests.
        await conn.execute(
            "INSERT INTO analytics_alert_thresholds (webhook_id, p95_ms, min_requests) VALUES ($1, 500, 5)",
            slow,
        )
    finally:
        await conn.close()
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    s = analytics_settings(settings, analytics_alert_sweep_s=0.2)

    async def outbox_rows() -> int:
        c = await asyncpg.connect(settings.database_url)
        try:
            return int(await c.fetchval("SELECT count(*) FROM analytics_alert_outbox"))
        finally:
            await c.close()

    async def alerts_for(webhook: uuid.UUID, n: int) -> list[PerformanceAlert]:
        async def probe() -> list[PerformanceAlert]:
            return [a for a in await read_alerts(settings) if a.webhook_id == webhook]

        return await eventually(probe, until=lambda a: len(a) >= n, what=f"{n} alert(s)")

    async with running_analytics(s, clock=clock) as svc:
        # 20 good requests: at the minimum, 0 % errors.
        await publish_events(settings, [processed(ws, noisy, duration_ms=10) for _ in range(20)])
        await wait_total(svc, noisy, 20)
        assert await outbox_rows() == 0

        # 5 failures: 20 % > 10 % over 25 requests -> one firing alert.
        await publish_events(settings, [failed(ws, noisy) for _ in range(5)])
        await wait_total(svc, noisy, 25)
        [fired] = await alerts_for(noisy, 1)
        assert (fired.metric, fired.state, fired.threshold) == ("error_rate", "firing", 10.0)
        assert 10.0 < fired.value <= 20.0  # 20 % when the 5 failures came in one batch
        assert fired.event_id == alert_event_id(noisy, "error_rate", 1, "firing")
        assert fired.workspace_id == ws

        # Staying above (5 more failures, 33 %): nothing more.
        await publish_events(settings, [failed(ws, noisy) for _ in range(5)])
        body = await wait_total(svc, noisy, 30)
        assert await outbox_rows() == 1  # recorded in the same transaction as the counts
        assert [a["firing"] for a in body["alerts"] if a["metric"] == "error_rate"] == [True]

        # Recovery: 70 good ones bring it to 10 / 100 = 10 %, not above -> resolved.
        await publish_events(settings, [processed(ws, noisy, duration_ms=10) for _ in range(70)])
        await wait_total(svc, noisy, 100)
        alerts = await alerts_for(noisy, 2)
        assert [(a.metric, a.state) for a in alerts] == [
            ("error_rate", "firing"),
            ("error_rate", "resolved"),
        ]
        assert alerts[1].event_id == alert_event_id(noisy, "error_rate", 1, "resolved")

        # The override: 5 slow requests cross the webhook's own p95 threshold.
        await publish_events(settings, [processed(ws, slow, duration_ms=800) for _ in range(5)])
        [slow_fired] = await alerts_for(slow, 1)
        assert (slow_fired.metric, slow_fired.state, slow_fired.threshold) == (
            "p95_processing_time",
            "firing",
            500.0,
        )
        assert abs(slow_fired.value - 800) <= 8

        # No new requests, and the window moves past them: the sweep resolves it.
        offset[0] = timedelta(minutes=10)
        slow_alerts = await alerts_for(slow, 2)
        assert [a.state for a in slow_alerts] == ["firing", "resolved"]
    published = await read_alerts(settings)
    assert len(published) == 4

    # Replaying the whole outcome topic with a new group fires nothing again.
    replay = analytics_settings(
        settings, analytics_group=f"replay-{unique}", analytics_alert_sweep_s=0.2
    )
    async with running_analytics(replay) as svc:
        status, body = await svc.get(f"/analytics/webhooks/{noisy}")
        assert status == 200 and body["metrics"]["total_requests"] == 100
        await publish_events(settings, [processed(ws, uuid.uuid4(), duration_ms=5)])  # a marker
        marker_seen = await eventually(
            lambda: svc.get("/analytics/workspaces/" + str(ws)),
            until=lambda r: r[0] == 200 and len(r[1]["webhooks"]) == 3,
            what="replay reached the marker",
        )
        assert marker_seen[1]["metrics"]["total_requests"] == 106
    assert len(await read_alerts(settings)) == 4
    assert await outbox_rows() == 4


async def test_alert_outbox_survives_kafka_outage(settings: CommonSettings) -> None:
    """The transition commits with the counts; publishing waits for Kafka, same event id."""
    from collections.abc import Sequence

    from services.analytics.handlers import count_outcomes, flush_alert_outbox
    from services.analytics.postgres_repository import PostgresAnalytics
    from services.analytics.service import handler_config
    from shared.db import create_pool
    from shared.kafka import KafkaUnavailable

    ws, wh = uuid.uuid4(), uuid.uuid4()
    cfg = handler_config(analytics_settings(settings))
    pool = await create_pool(settings.database_url)
    repo = PostgresAnalytics(pool)
    try:
        events = [failed(ws, wh) for _ in range(25)]
        result = await count_outcomes(events, repo=repo, config=cfg, now=datetime.now(UTC))
        assert (result.counted, result.transitions) == (25, 1)

        async def kafka_down(_events: Sequence[PerformanceAlert]) -> None:
            raise KafkaUnavailable("test: broker away")

        assert await flush_alert_outbox(repo=repo, publish=kafka_down) == 0
        sent: list[PerformanceAlert] = []

        async def kafka_up(batch: Sequence[PerformanceAlert]) -> None:
            sent.extend(batch)

        assert await flush_alert_outbox(repo=repo, publish=kafka_up) == 1
        assert await flush_alert_outbox(repo=repo, publish=kafka_up) == 0  # published once
        assert [(a.event_id, a.state) for a in sent] == [
            (alert_event_id(wh, "error_rate", 1, "firing"), "firing")
        ]
        # Redelivering the same batch changes nothing and queues nothing.
        again = await count_outcomes(events, repo=repo, config=cfg, now=datetime.now(UTC))
        assert (again.counted, again.transitions) == (0, 0)
        assert await flush_alert_outbox(repo=repo, publish=kafka_up) == 0
    finally:
        await pool.close()
