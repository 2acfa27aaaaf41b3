"""Handlers: count a batch of outcomes exactly once, evaluate alerts, publish them.

Idempotency (every message can arrive twice, and a topic can be replayed from offset 0 by
a new consumer group): a batch's event ids and its increments commit in ONE Postgres
transaction, and only ids that were not already in ``analytics_counted_events`` are
counted. A crash before the commit counts nothing (the batch is redelivered); a crash
after it leaves ids that make the redelivery a no-op. Alert transitions are stored in the
same transaction and published from an outbox afterwards, with deterministic event ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter

from services.analytics import repository as repo
from services.analytics.aggregate import Outcome, aggregate
from services.analytics.alerts import METRICS, Thresholds, decide
from services.analytics.report import window_start
from shared.events import PerformanceAlert
from shared.kafka import KafkaUnavailable, Message
from shared.logs import get_logger

log = get_logger(__name__)

EVENTS = Counter(
    "leadwire_analytics_events_total",
    "Outcome events seen by analytics: counted, duplicate (already counted) or stale",
    ["result"],
)
ALERTS = Counter(
    "leadwire_analytics_alerts_published_total", "Performance alert events published", ["state"]
)

PublishAlerts = Callable[[Sequence[PerformanceAlert]], Awaitable[None]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Config:
    accuracy: float
    dedupe_days: int
    thresholds: Thresholds


@dataclass(frozen=True)
class BatchResult:
    counted: int
    duplicates: int
    stale: int
    transitions: int
    workspaces: frozenset[uuid.UUID]


async def count_outcomes(
    events: Sequence[Outcome], *, pool: asyncpg.Pool, config: Config, now: datetime
) -> BatchResult:
    """Count the events not counted before; one transaction. Safe to call twice."""
    unique: dict[uuid.UUID, Outcome] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    horizon = now - timedelta(days=config.dedupe_days)
    # Older than the dedupe horizon: its id may have been pruned, so counting it could
    # count it twice; such an event was counted when it was new.
    fresh = [e for e in unique.values() if e.occurred_at >= horizon]
    stale = len(unique) - len(fresh)
    transitions = 0
    async with pool.acquire() as conn, conn.transaction():
        new_ids = await repo.claim_events(conn, fresh)
        new = [e for e in fresh if e.event_id in new_ids]
        deltas = aggregate(new, accuracy=config.accuracy)
        if deltas:
            await repo.apply_deltas(conn, deltas)
            transitions = await evaluate_alerts(
                conn,
                {w: d.workspace_id for w, d in deltas.items()},
                config=config,
                now=now,
            )
            await repo.notify_workspaces(conn, (d.workspace_id for d in deltas.values()))
    duplicates = len(events) - len(new) - stale
    EVENTS.labels("counted").inc(len(new))
    EVENTS.labels("duplicate").inc(duplicates)
    EVENTS.labels("stale").inc(stale)
    return BatchResult(
        counted=len(new),
        duplicates=duplicates,
        stale=stale,
        transitions=transitions,
        workspaces=frozenset(d.workspace_id for d in deltas.values()),
    )


async def evaluate_alerts(
    conn: asyncpg.Connection,
    webhooks: dict[uuid.UUID, uuid.UUID],
    *,
    config: Config,
    now: datetime,
) -> int:
    """Record (and queue for publishing) every alert transition of these webhooks.

    Runs inside the caller's transaction; the state rows are locked first, so the window
    figures read after it include every batch committed before.
    """
    if not webhooks:
        return 0
    states = await repo.lock_alert_states(conn, webhooks)
    limits = await repo.thresholds(conn, list(webhooks), config.thresholds)
    starts = {w: window_start(now, t.window_minutes) for w, t in limits.items()}
    stats = await repo.window_stats(conn, starts, accuracy=config.accuracy)
    count = 0
    for webhook_id in sorted(webhooks):
        for metric in METRICS:
            transition = decide(
                webhook_id=webhook_id,
                workspace_id=webhooks[webhook_id],
                metric=metric,
                state=states[(webhook_id, metric)],
                stats=stats[webhook_id],
                thresholds=limits[webhook_id],
                now=now,
            )
            if transition is not None:
                await repo.save_transition(conn, webhook_id, transition)
                log.info(
                    "performance_alert",
                    webhook_id=str(webhook_id),
                    metric=metric,
                    state=transition.event.state,
                    value=transition.value,
                    threshold=transition.threshold,
                )
                count += 1
    return count


async def sweep_alerts(pool: asyncpg.Pool, *, config: Config, now: datetime) -> int:
    """Re-check firing alerts without new outcomes (traffic stopped: the window empties)."""
    async with pool.acquire() as conn, conn.transaction():
        firing = await repo.firing_webhooks(conn)
        if not firing:
            return 0
        count = await evaluate_alerts(conn, firing, config=config, now=now)
        if count:
            await repo.notify_workspaces(conn, firing.values())
        return count


async def flush_alert_outbox(pool: asyncpg.Pool, *, publish: PublishAlerts) -> int:
    """Publish unpublished alert events, oldest first; they stay queued if Kafka is away.

    A crash after publishing and before marking them re-publishes the same event ids,
    which the notifier dedupes.
    """
    published = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await repo.claim_pending_alerts(conn)
            if not rows:
                return published
            events = [PerformanceAlert.model_validate(r["payload"]) for r in rows]
            try:
                await publish(events)
            except KafkaUnavailable:
                log.warning("alert_publish_deferred", count=len(events))
                return published
            await repo.mark_published(conn, [r["event_id"] for r in rows])
        for e in events:
            ALERTS.labels(e.state).inc()
        published += len(events)


def make_batch_handler(
    *,
    pool: asyncpg.Pool,
    config: Config,
    publish: PublishAlerts,
    clock: Clock,
) -> Callable[[list[Message[Outcome]]], Awaitable[None]]:
    """The ConsumerRunner batch handler: count, then publish any alert it raised."""

    async def handle(messages: list[Message[Outcome]]) -> None:
        result = await count_outcomes(
            [m.value for m in messages], pool=pool, config=config, now=clock()
        )
        if result.transitions:
            await flush_alert_outbox(pool, publish=publish)
        log.debug(
            "batch_counted",
            count=result.counted,
            duplicates=result.duplicates,
            stale=result.stale,
        )

    return handle
