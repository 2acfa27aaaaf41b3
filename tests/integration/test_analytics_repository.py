"""The in-memory fake the unit tests use answers as Postgres does: the same writes through
the handlers, then every read of the repository compared, on both implementations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.analytics import handlers
from services.analytics.alerts import Thresholds
from services.analytics.deadletter_repository import PostgresDeadLetters
from services.analytics.deadletters import DeadLetterRow
from services.analytics.fake_repository import FakeAnalytics
from services.analytics.postgres_repository import PostgresAnalytics
from services.analytics.repository import AnalyticsRepository
from shared.db import create_pool
from shared.events import Outcome, PerformanceAlert
from shared.settings import CommonSettings
from tests.support.analytics import seed_webhooks
from tests.support.events import failed, processed, rejected

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(second=30, microsecond=0)
WS, OTHER_WS = uuid.uuid4(), uuid.uuid4()
BUSY, IDLE, SLOW, UNNAMED = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
VENDOR_WINDOWS = {"short": NOW - timedelta(minutes=1), "long": NOW - timedelta(days=30)}
CONFIG = handlers.Config(accuracy=0.01, dedupe_days=30, thresholds=Thresholds(10.0, 1000.0, 20, 5))


def batches() -> list[list[Outcome]]:
    def at(minutes: int, seconds: int = 0) -> datetime:
        return NOW - timedelta(minutes=minutes, seconds=seconds)

    first: list[Outcome] = [
        processed(WS, BUSY, received_at=at(i % 3, i), duration_ms=float(10 * (i % 7 + 1)))
        for i in range(20)
    ]
    first += [
        failed(WS, BUSY, received_at=at(1, i), error_type="timeout" if i % 2 else "db")
        for i in range(4)
    ]
    first += [rejected(WS, BUSY, received_at=at(0, 40 + i)) for i in range(2)]
    first += [
        rejected(WS, BUSY, received_at=at(0, 50 + i), reason=reason, status_code=code)
        for i, (reason, code) in enumerate(
            [
                ("validation", 400),
                ("duplicate_lead", 409),
                ("suppressed", 409),
                ("invalid_body", 400),
            ]
        )
    ]
    second: list[Outcome] = [
        processed(WS, SLOW, received_at=at(0, i), duration_ms=800.0) for i in range(5)
    ]
    second += [processed(OTHER_WS, UNNAMED, received_at=at(60 * 30), duration_ms=20.0)]
    second += first[:5]  # redelivered
    return [first, second]


async def fill(repo: AnalyticsRepository, batches: list[list[Outcome]]) -> list[PerformanceAlert]:
    sent: list[PerformanceAlert] = []

    async def publish(events: Sequence[PerformanceAlert]) -> None:
        sent.extend(events)

    for batch in batches:
        await handlers.count_outcomes(batch, repo=repo, config=CONFIG, now=NOW)
    await handlers.flush_alert_outbox(repo=repo, publish=publish)
    later = NOW + timedelta(minutes=10)
    await handlers.sweep_and_publish(repo=repo, config=CONFIG, publish=publish, clock=lambda: later)
    return sent


async def reads(repo: AnalyticsRepository) -> dict[str, Any]:
    ids = [BUSY, IDLE, SLOW, UNNAMED]
    since = NOW - timedelta(hours=24)
    top, rest, firing = await repo.metrics_rows(2, since)
    return {
        "webhook_row": [await repo.webhook_row(w) for w in [*ids, uuid.uuid4()]],
        "workspace_rows": sorted(await repo.workspace_rows(WS), key=lambda r: r["webhook_id"]),
        "workspace_name": [await repo.workspace_name(w) for w in (WS, OTHER_WS, uuid.uuid4())],
        "window_totals": await repo.window_totals(ids, NOW - timedelta(minutes=1)),
        "breakdowns": sorted(
            await repo.breakdowns(ids), key=lambda r: (r["webhook_id"], r["dimension"], r["name"])
        ),
        "recent_errors": await repo.recent_errors(ids, 3),
        "alert_states": await repo.alert_states(ids),
        "minutes": await repo.minutes(BUSY, NOW - timedelta(minutes=2), NOW),
        "workspace_minutes": sorted(
            await repo.workspace_minutes(WS, NOW - timedelta(minutes=1)),
            key=lambda r: (r["webhook_id"], r["minute"]),
        ),
        "workspaces": await repo.workspaces(),
        "metrics_rows": (top, rest, sorted(firing, key=lambda r: (r["webhook_id"], r["metric"]))),
        "vendor_rows": await repo.vendor_rows(WS, VENDOR_WINDOWS),
        "vendor_metrics": await repo.vendor_metrics([BUSY, IDLE], NOW - timedelta(hours=24)),
        "prune": await repo.prune(
            counted_before=NOW - timedelta(days=1),
            minutes_before=NOW - timedelta(days=1),
            errors_per_webhook=2,
            vendors_before=NOW - timedelta(minutes=2),
        ),
        "vendor_rows_after_prune": await repo.vendor_rows(WS, VENDOR_WINDOWS),
        "after_prune": await repo.recent_errors(ids, 10),
        "deadletter_counts": await repo.deadletter_counts(ids),
        "workspace_deadletters": [await repo.workspace_deadletters(w) for w in (WS, OTHER_WS)],
        "deadletter_top": await repo.deadletter_top(2),
    }


def dead_letters() -> list[DeadLetterRow]:
    """Dead letters: BUSY's twice, SLOW's once, UNNAMED's (another workspace) three times,
    one without ids; one of BUSY's repeated (a redelivery)."""
    owners = [(WS, BUSY)] * 2 + [(WS, SLOW)] + [(OTHER_WS, UNNAMED)] * 3 + [(None, None)]
    rows = [
        DeadLetterRow("deadletter", 0, offset, "outcomes", "permanent", "g", ws, hook, NOW)
        for offset, (ws, hook) in enumerate(owners)
    ]
    return [*rows, rows[0]]


def deliveries(batch: list[Outcome]) -> list[tuple[uuid.UUID, datetime, float]]:
    """The notifier's first email or SMS for eight of BUSY's processed leads, 1 to 8 s
    after each arrived (event id, received_at, seconds)."""
    leads = [e for e in batch if e.type == "lead.processed"][:8]
    return [(e.event_id, e.received_at, float(i + 1)) for i, e in enumerate(leads)]


async def notify(pool: asyncpg.Pool, event_id: uuid.UUID, received: datetime, after: float) -> None:
    """Rows as the notifier's ledger holds them: an email sent ``after`` seconds after the
    lead arrived, an SMS sent later, a real-time push at once (not counted) and a pending
    email (not sent yet)."""
    rows = [
        ("email", "sent", received + timedelta(seconds=after)),
        ("sms", "sent", received + timedelta(seconds=after + 30)),
        ("realtime", "sent", received),
        ("email", "pending", None),
    ]
    await pool.executemany(
        """INSERT INTO notification_sends (id, event_id, workspace_id, channel, recipient,
               kinds, summary, event_at, status, sent_at)
           VALUES ($1, $2, $3, $4, $5, 'lead_created', '{}', $6, $7, $8)""",
        [
            (uuid.uuid4(), event_id, WS, channel, f"{channel}-{i}", received, status, sent)
            for i, (channel, status, sent) in enumerate(rows)
        ],
    )


async def test_the_fake_answers_as_postgres_does(settings: CommonSettings) -> None:
    names = {BUSY: "LeadConduit", IDLE: "Facebook", SLOW: "Zapier"}
    fake = FakeAnalytics()
    fake.configure(WS, "Acme Solar", names)
    fake.tables.thresholds[SLOW] = {"p95_ms": 500.0, "min_requests": 5, "enabled": True}
    await seed_webhooks(settings.database_url, WS, "Acme Solar", names)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO analytics_alert_thresholds (webhook_id, p95_ms, min_requests)"
            " VALUES ($1, 500, 5)",
            SLOW,
        )
    finally:
        await conn.close()
    events = batches()
    pool = await create_pool(settings.database_url)
    try:
        postgres = PostgresAnalytics(pool)
        sent = await fill(postgres, events)
        assert sorted((a.state, a.webhook_id == BUSY, a.metric) for a in sent) == [
            ("firing", False, "p95_processing_time"),
            ("firing", True, "error_rate"),
            ("resolved", False, "p95_processing_time"),
            ("resolved", True, "error_rate"),
        ]
        assert await fill(fake, events) == sent
        for event_id, received, seconds in deliveries(events[0]):
            await notify(pool, event_id, received, seconds)
            fake.deliver(event_id, received + timedelta(seconds=seconds))
        # Sent after the leads were counted: the delivery sync copies them (twice: no change).
        assert await postgres.sync_deliveries(since=NOW - timedelta(days=1)) == 8
        assert await postgres.sync_deliveries(since=NOW - timedelta(days=1)) == 0
        store = PostgresDeadLetters(pool)
        for row in dead_letters():
            await store.record([row])
            fake.add_deadletter(row)
        expected = await reads(postgres)
    finally:
        await pool.close()
    got = await reads(fake)
    for name, value in expected.items():
        assert got[name] == value, name
