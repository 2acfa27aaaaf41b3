"""Analytics handlers on the in-memory repository: counting exactly once, alerts through
the outbox, the sweep, pruning, and a transaction that fails leaving nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.analytics import handlers
from services.analytics.alerts import Thresholds, alert_event_id
from services.analytics.fake_repository import FakeAnalytics
from services.analytics.repository import AnalyticsRepository
from shared.events import Outcome, PerformanceAlert
from shared.kafka import KafkaUnavailable
from tests.support.events import as_messages, failed, processed, rejected

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
CONFIG = handlers.Config(
    accuracy=0.01,
    dedupe_days=30,
    thresholds=Thresholds(
        error_rate_percent=10.0, p95_ms=1000.0, min_requests=20, window_minutes=5
    ),
)


class Alerts:
    """A stand-in for the alerts topic: what was published, or Kafka away."""

    def __init__(self) -> None:
        self.sent: list[PerformanceAlert] = []
        self.down = False

    async def publish(self, events: Sequence[PerformanceAlert]) -> None:
        if self.down:
            raise KafkaUnavailable("test: broker away")
        self.sent.extend(events)


async def count(
    repo: AnalyticsRepository, events: Sequence[Outcome], now: datetime = NOW
) -> handlers.BatchResult:
    return await handlers.count_outcomes(events, repo=repo, config=CONFIG, now=now)


async def test_a_batch_counts_once_however_often_it_arrives() -> None:
    repo = FakeAnalytics()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    at = NOW - timedelta(seconds=20)
    events = [processed(ws, wh, received_at=at, duration_ms=10.0 * (i + 1)) for i in range(3)]
    events += [failed(ws, wh, received_at=at), rejected(ws, wh, received_at=at)]

    first = await count(repo, events + events[:2])  # duplicates inside the batch too
    assert (first.counted, first.duplicates, first.stale) == (5, 2, 0)
    again = await count(repo, events)
    assert (again.counted, again.duplicates) == (0, 5)

    row = await repo.webhook_row(wh)
    assert row is not None
    assert (row["total"], row["processed"], row["failed"], row["rejected"]) == (5, 3, 1, 1)
    assert repo.notified == [ws]  # only the batch that counted something woke dashboards


async def test_an_outcome_past_the_dedupe_horizon_is_not_counted() -> None:
    repo = FakeAnalytics()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    old = processed(ws, wh, received_at=NOW - timedelta(days=31))
    result = await count(repo, [old, processed(ws, wh, received_at=NOW)])
    assert (result.counted, result.stale) == (1, 1)


async def test_a_failing_transaction_counts_nothing() -> None:
    repo = FakeAnalytics()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    events = [processed(ws, wh, received_at=NOW) for _ in range(3)]

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with repo.transaction() as tx:
            await tx.claim_events(events)
            raise Boom
    assert await repo.webhook_row(wh) is None
    assert (await count(repo, events)).counted == 3  # the ids were not kept either


async def test_error_rate_alert_fires_once_then_resolves_through_the_outbox() -> None:
    repo, kafka = FakeAnalytics(), Alerts()
    ws, wh = uuid.uuid4(), uuid.uuid4()

    async def handle(events: Sequence[Outcome]) -> None:
        await handlers.handle_outcomes(
            as_messages(events), repo=repo, config=CONFIG, publish=kafka.publish, clock=lambda: NOW
        )

    await handle([processed(ws, wh, received_at=NOW) for _ in range(20)])
    assert kafka.sent == []
    await handle([failed(ws, wh, received_at=NOW) for _ in range(5)])  # 20 % > 10 %
    await handle([failed(ws, wh, received_at=NOW) for _ in range(5)])  # still above: nothing
    assert [(a.metric, a.state) for a in kafka.sent] == [("error_rate", "firing")]
    assert kafka.sent[0].event_id == alert_event_id(wh, "error_rate", 1, "firing")

    await handle([processed(ws, wh, received_at=NOW) for _ in range(70)])  # 10 %: not above
    assert [a.state for a in kafka.sent] == ["firing", "resolved"]
    [status] = [a for a in await repo.alert_states([wh]) if a["metric"] == "error_rate"]
    assert status["firing"] is False


async def test_alerts_wait_in_the_outbox_while_kafka_is_away() -> None:
    repo, kafka = FakeAnalytics(), Alerts()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    result = await count(repo, [failed(ws, wh, received_at=NOW) for _ in range(25)])
    assert result.transitions == 1

    kafka.down = True
    assert await handlers.flush_alert_outbox(repo=repo, publish=kafka.publish) == 0
    kafka.down = False
    assert await handlers.flush_alert_outbox(repo=repo, publish=kafka.publish) == 1
    assert await handlers.flush_alert_outbox(repo=repo, publish=kafka.publish) == 0
    assert [a.event_id for a in kafka.sent] == [alert_event_id(wh, "error_rate", 1, "firing")]


async def test_the_sweep_resolves_an_alert_when_traffic_stops() -> None:
    repo, kafka = FakeAnalytics(), Alerts()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    await count(repo, [failed(ws, wh, received_at=NOW) for _ in range(25)])
    await handlers.sweep_and_publish(
        repo=repo, config=CONFIG, publish=kafka.publish, clock=lambda: NOW
    )
    assert kafka.sent == []  # still firing: no transition (the outbox loop sends the firing)
    later = NOW + timedelta(minutes=10)
    await handlers.sweep_and_publish(
        repo=repo, config=CONFIG, publish=kafka.publish, clock=lambda: later
    )
    assert [a.state for a in kafka.sent] == ["firing", "resolved"]
    assert await handlers.sweep_alerts(repo=repo, config=CONFIG, now=later) == 0


async def test_a_per_webhook_threshold_overrides_the_default() -> None:
    repo, kafka = FakeAnalytics(), Alerts()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    repo.tables.thresholds[wh] = {"p95_ms": 500.0, "min_requests": 5, "enabled": True}
    await count(repo, [processed(ws, wh, received_at=NOW, duration_ms=800.0) for _ in range(5)])
    await handlers.flush_alert_outbox(repo=repo, publish=kafka.publish)
    [fired] = kafka.sent
    assert (fired.metric, fired.threshold) == ("p95_processing_time", 500.0)


async def test_prune_keeps_the_newest_errors_and_recent_minutes() -> None:
    repo = FakeAnalytics()
    ws, wh = uuid.uuid4(), uuid.uuid4()
    old = NOW - timedelta(days=20)
    await count(repo, [failed(ws, wh, received_at=old) for _ in range(3)])
    await count(repo, [failed(ws, wh, received_at=NOW) for _ in range(3)])
    removed = await handlers.prune(
        repo=repo,
        clock=lambda: NOW,
        dedupe_days=10,
        minute_retention_days=14,
        errors_per_webhook=2,
    )
    assert removed == {
        "counted_events": 3,
        "minutes": 1,
        "recent_errors": 4,
        "alert_outbox": 0,
        "vendor_minutes": 0,  # 20 days old: inside the scorecards' 31 days
        "vendor_accepted": 0,
    }
    errors = await repo.recent_errors([wh], 10)
    assert len(errors) == 2 and all(e.occurred_at > old for e in errors)
