"""Handlers: count a batch of outcomes exactly once, evaluate alerts, publish them; and
the periodic upkeep (sweep firing alerts, retry the outbox, prune, refresh the metrics).

Plain ``async def`` functions: the typed messages first, every dependency keyword-only
(``service.py`` binds them).

Idempotency (every message can arrive twice, and a topic can be replayed from offset 0 by
a new consumer group): a batch's event ids and its increments commit in ONE transaction,
and only ids that were not already counted are counted. A crash before the commit counts
nothing (the batch is redelivered); a crash after it leaves ids that make the redelivery
a no-op. Alert transitions are stored in the same transaction and published from an
outbox afterwards, with deterministic event ids.

Dead letters (the consumers' dead-letter topic) are counted the same way, keyed by the
dead-letter message's own position; the growth alert is decided under a lock and
published from its state row (see :mod:`~services.analytics.deadletters`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.analytics.aggregate import aggregate
from services.analytics.alerts import METRICS, Thresholds, decide
from services.analytics.clock import Clock
from services.analytics.deadletters import (
    DeadLetterRow,
    GrowthState,
    decide_growth,
    growth_event,
    read_entry,
)
from services.analytics.metrics import ALERTS, DEADLETTERS, EVENTS
from services.analytics.report import window_start
from services.analytics.repository import (
    AnalyticsRepository,
    AnalyticsTransaction,
    DeadLetterStore,
)
from services.analytics.vendors import RETENTION_DAYS
from shared.events import Outcome, PerformanceAlert, SystemHealthAlert
from shared.kafka import KafkaUnavailable, Message
from shared.kafka.failures import classify
from shared.logs import get_logger

log = get_logger(__name__)

PublishAlerts = Callable[[Sequence[PerformanceAlert]], Awaitable[None]]
PublishHealth = Callable[[SystemHealthAlert], Awaitable[object]]


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


async def handle_outcomes(
    messages: Sequence[Message[Outcome]],
    *,
    repo: AnalyticsRepository,
    config: Config,
    publish: PublishAlerts,
    clock: Clock,
) -> None:
    """The consumer's batch handler: count, then publish any alert the batch raised."""
    result = await count_outcomes(
        [m.value for m in messages], repo=repo, config=config, now=clock()
    )
    if result.transitions:
        await flush_alert_outbox(repo=repo, publish=publish)
    log.debug(
        "batch_counted", count=result.counted, duplicates=result.duplicates, stale=result.stale
    )


async def count_outcomes(
    events: Sequence[Outcome], *, repo: AnalyticsRepository, config: Config, now: datetime
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
    async with repo.transaction() as tx:
        new_ids = await tx.claim_events(fresh)
        new = [e for e in fresh if e.event_id in new_ids]
        deltas = aggregate(new, accuracy=config.accuracy)
        if deltas:
            await tx.apply_deltas(deltas)
            transitions = await evaluate_alerts(
                {w: d.workspace_id for w, d in deltas.items()}, tx=tx, config=config, now=now
            )
            await tx.notify_workspaces(d.workspace_id for d in deltas.values())
    duplicates = len(events) - len(new) - stale
    EVENTS.labels("counted").inc(len(new))
    EVENTS.labels("duplicate").inc(duplicates)
    EVENTS.labels("stale").inc(stale)
    return BatchResult(
        counted=len(new),
        duplicates=duplicates,
        stale=stale,
        transitions=transitions,
    )


async def evaluate_alerts(
    webhooks: dict[uuid.UUID, uuid.UUID],
    *,
    tx: AnalyticsTransaction,
    config: Config,
    now: datetime,
) -> int:
    """Record (and queue for publishing) every alert transition of these webhooks
    (webhook -> workspace); returns how many.

    Runs inside the caller's transaction; the state rows are locked first, so the window
    figures read after it include every batch committed before.
    """
    if not webhooks:
        return 0
    states = await tx.lock_alert_states(webhooks)
    limits = await tx.thresholds(list(webhooks), config.thresholds)
    starts = {w: window_start(now, t.window_minutes) for w, t in limits.items()}
    stats = await tx.window_stats(starts, accuracy=config.accuracy)
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
            if transition is None:
                continue
            await tx.save_transition(webhook_id, transition)
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


async def sweep_alerts(*, repo: AnalyticsRepository, config: Config, now: datetime) -> int:
    """Re-check firing alerts without new outcomes (traffic stopped: the window empties)."""
    async with repo.transaction() as tx:
        firing = await tx.firing_webhooks()
        if not firing:
            return 0
        count = await evaluate_alerts(firing, tx=tx, config=config, now=now)
        if count:
            await tx.notify_workspaces(firing.values())
        return count


async def flush_alert_outbox(*, repo: AnalyticsRepository, publish: PublishAlerts) -> int:
    """Publish unpublished alert events, oldest first; they stay queued if Kafka is away.

    A crash after publishing and before marking them re-publishes the same event ids,
    which the notifier dedupes.
    """
    published = 0
    while True:
        async with repo.transaction() as tx:
            events = await tx.claim_pending_alerts()
            if not events:
                return published
            try:
                await publish(events)
            except KafkaUnavailable:
                log.warning("alert_publish_deferred", count=len(events))
                return published
            await tx.mark_published([e.event_id for e in events])
        for e in events:
            ALERTS.labels(e.state).inc()
        published += len(events)


async def sweep_and_publish(
    *, repo: AnalyticsRepository, config: Config, publish: PublishAlerts, clock: Clock
) -> None:
    """Periodic: resolve alerts whose window emptied, and publish what that queued."""
    if await sweep_alerts(repo=repo, config=config, now=clock()):
        await flush_alert_outbox(repo=repo, publish=publish)


async def prune(
    *,
    repo: AnalyticsRepository,
    clock: Clock,
    dedupe_days: int,
    minute_retention_days: int,
    errors_per_webhook: int,
) -> dict[str, int]:
    """Periodic: drop what is past retention (see the settings of the same names)."""
    now = clock()
    removed = await repo.prune(
        counted_before=now - timedelta(days=dedupe_days),
        minutes_before=now - timedelta(days=minute_retention_days),
        errors_per_webhook=errors_per_webhook,
        vendors_before=now - timedelta(days=RETENTION_DAYS),
    )
    log.info("analytics_pruned", **removed)
    return removed


@dataclass
class DeliverySync:
    """Periodic: copy the notifier's deliveries (first email or SMS sent) to the accepted
    leads, for speed-to-lead. Each round reads the sends since the previous round's start
    less ``overlap`` (a send committed a little after its ``sent_at`` is still seen); the
    first round, since the scorecards' retention. A send made before its lead was counted
    is copied by the counting itself."""

    repo: AnalyticsRepository
    clock: Clock
    overlap: timedelta = timedelta(minutes=10)
    since: datetime | None = None

    async def run(self) -> int:
        started = self.clock()
        since = self.since or started - timedelta(days=RETENTION_DAYS)
        found = await self.repo.sync_deliveries(since=since)
        self.since = started - self.overlap
        return found


# --- dead letters -------------------------------------------------------------------


async def count_deadletters(
    messages: Sequence[Message[bytes]],
    *,
    store: DeadLetterStore,
    dedupe_days: int,
    clock: Clock,
) -> None:
    """The dead-letter consumer's batch handler: count each dead letter once (per webhook
    and workspace where the entry names them).

    It never raises for a dead letter it cannot store (it logs and skips it): the runner
    would dead-letter that onto the very topic this consumer reads. Only a dependency
    being away (transient) is raised, so the runner retries the batch."""
    horizon = clock() - timedelta(days=dedupe_days)
    rows = [
        read_entry(
            m.raw,
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            timestamp_ms=m.timestamp_ms,
        )
        for m in messages
    ]
    fresh = [r for r in rows if r.failed_at >= horizon]
    new, skipped = await _record_deadletters(store, fresh)
    DEADLETTERS.labels("counted").inc(new)
    DEADLETTERS.labels("duplicate").inc(len(fresh) - new - skipped)
    DEADLETTERS.labels("stale").inc(len(rows) - len(fresh))
    DEADLETTERS.labels("skipped").inc(skipped)


async def _record_deadletters(store: DeadLetterStore, rows: list[DeadLetterRow]) -> tuple[int, int]:
    """(new, skipped): the batch in one statement; if the database refuses it for good,
    row by row, skipping the rows it refuses."""
    try:
        return await store.record(rows), 0
    except Exception as exc:
        if classify(exc) == "transient":
            raise
    new = skipped = 0
    for row in rows:
        try:
            new += await store.record([row])
        except Exception as exc:
            if classify(exc) == "transient":
                raise
            skipped += 1
            log.error(
                "deadletter_uncountable",
                partition=row.partition,
                offset=row.offset,
                error=type(exc).__name__,
            )
    return new, skipped


async def check_deadletter_growth(
    *,
    store: DeadLetterStore,
    publish: PublishHealth,
    window_minutes: float,
    min_count: int,
    clock: Clock,
) -> GrowthState | None:
    """Periodic: fire the growth alert when ``min_count`` dead letters failed within the
    window, resolve it after a window without any; publish the transition (retried on the
    next round while Kafka is away). Returns the new state, if it changed."""
    now = clock()

    def decide(state: GrowthState, recent: dict[str, int]) -> GrowthState | None:
        return decide_growth(
            state, recent, now=now, window_minutes=window_minutes, min_count=min_count
        )

    changed = await store.update_growth(now - timedelta(minutes=window_minutes), decide)
    if changed is not None:
        log.warning("deadletter_growth_alert", firing=changed.firing)
    pending = await store.unpublished_growth()
    if pending is not None and pending.changed_at is not None:
        try:
            await publish(growth_event(pending))
        except KafkaUnavailable:
            log.warning("deadletter_growth_alert_deferred")
            return changed
        await store.mark_growth_published(pending.changed_at)
    return changed
