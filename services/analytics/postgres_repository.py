"""The asyncpg implementation of :class:`~services.analytics.repository.AnalyticsRepository`:
all of analytics' SQL, in one place.

Writes run on a connection inside the transaction :meth:`PostgresAnalytics.transaction`
opens; reads take the pool. Rows that many batches update are written in a stable order
(sorted keys) so two replicas touching the same webhook queue up instead of deadlocking.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg

from services.analytics.aggregate import WebhookDelta
from services.analytics.alerts import (
    METRICS,
    AlertState,
    Thresholds,
    Transition,
    WindowStats,
    window_stats,
    with_overrides,
)
from services.analytics.deadletter_repository import DeadLetterReads
from services.analytics.repository import (
    NOTIFY_CHANNEL,
    AlertRow,
    AnalyticsRepository,
    AnalyticsTransaction,
    BreakdownRow,
    FiringRow,
    MinuteCounts,
    MinuteRow,
    RestRow,
    TopRow,
    TotalsRow,
    WebhookRow,
    WorkspaceRow,
)
from services.analytics.retention_repository import Retention
from services.analytics.schemas import RecentError
from services.analytics.vendor_repository import VendorSql, add_vendor_counts
from shared.events import Outcome, PerformanceAlert

# --- the write side --------------------------------------------------------------


class PostgresTransaction:
    """:class:`AnalyticsTransaction` on a connection inside an open transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim_events(self, events: Sequence[Outcome]) -> set[uuid.UUID]:
        if not events:
            return set()
        rows = await self.conn.fetch(
            """INSERT INTO analytics_counted_events (event_id, webhook_id, occurred_at)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
               ON CONFLICT (event_id) DO NOTHING
               RETURNING event_id""",
            [e.event_id for e in events],
            [e.webhook_id for e in events],
            [e.occurred_at for e in events],
        )
        return {r["event_id"] for r in rows}

    async def apply_deltas(self, deltas: Mapping[uuid.UUID, WebhookDelta]) -> None:
        ordered = [deltas[k] for k in sorted(deltas)]
        await self._add_webhook_totals(ordered)
        await self._add_minutes(ordered)
        await self._add_breakdowns(ordered)
        await self._keep_errors(ordered)
        await add_vendor_counts(self.conn, ordered)

    async def _add_webhook_totals(self, ordered: Sequence[WebhookDelta]) -> None:
        await self.conn.executemany(
            """INSERT INTO analytics_webhooks AS a
                   (webhook_id, workspace_id, total, processed, failed, rejected,
                    duration_sum, sketch, first_seen_at, last_seen_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (webhook_id) DO UPDATE SET
                   total = a.total + EXCLUDED.total,
                   processed = a.processed + EXCLUDED.processed,
                   failed = a.failed + EXCLUDED.failed,
                   rejected = a.rejected + EXCLUDED.rejected,
                   duration_sum = a.duration_sum + EXCLUDED.duration_sum,
                   sketch = analytics_merge_bins(a.sketch, EXCLUDED.sketch),
                   first_seen_at = LEAST(a.first_seen_at, EXCLUDED.first_seen_at),
                   last_seen_at = GREATEST(a.last_seen_at, EXCLUDED.last_seen_at),
                   updated_at = now()""",
            [
                (d.webhook_id, d.workspace_id, *d.counts.row(), d.first_seen, d.last_seen)
                for d in ordered
            ],
        )

    async def _add_minutes(self, ordered: Sequence[WebhookDelta]) -> None:
        await self.conn.executemany(
            """INSERT INTO analytics_minutes AS m
                   (webhook_id, minute, workspace_id, total, processed, failed, rejected,
                    duration_sum, sketch)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (webhook_id, minute) DO UPDATE SET
                   total = m.total + EXCLUDED.total,
                   processed = m.processed + EXCLUDED.processed,
                   failed = m.failed + EXCLUDED.failed,
                   rejected = m.rejected + EXCLUDED.rejected,
                   duration_sum = m.duration_sum + EXCLUDED.duration_sum,
                   sketch = analytics_merge_bins(m.sketch, EXCLUDED.sketch)""",
            [
                (d.webhook_id, minute, d.workspace_id, *c.row())
                for d in ordered
                for minute, c in sorted(d.minutes.items())
            ],
        )

    async def _add_breakdowns(self, ordered: Sequence[WebhookDelta]) -> None:
        rows = [
            (d.webhook_id, dim, name, int(v[0]), float(v[1]))
            for d in ordered
            for (dim, name), v in sorted(d.breakdowns.items())
        ]
        if rows:
            await self.conn.executemany(
                """INSERT INTO analytics_breakdowns AS b
                       (webhook_id, dimension, name, count, sum_ms)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (webhook_id, dimension, name) DO UPDATE SET
                       count = b.count + EXCLUDED.count,
                       sum_ms = b.sum_ms + EXCLUDED.sum_ms""",
                rows,
            )

    async def _keep_errors(self, ordered: Sequence[WebhookDelta]) -> None:
        rows = [
            (
                d.webhook_id,
                d.workspace_id,
                e.event_id,
                e.request_id,
                e.occurred_at,
                e.status,
                e.error_type,
                e.message,
            )
            for d in ordered
            for e in d.errors
        ]
        if rows:
            await self.conn.executemany(
                """INSERT INTO analytics_recent_errors
                       (webhook_id, workspace_id, event_id, request_id, occurred_at, status,
                        error_type, message)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (event_id) DO NOTHING""",
                rows,
            )

    async def notify_workspaces(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        for ws in sorted(set(workspace_ids)):
            await self.conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(ws))

    async def lock_alert_states(
        self, webhooks: Mapping[uuid.UUID, uuid.UUID]
    ) -> dict[tuple[uuid.UUID, str], AlertState]:
        ids = sorted(webhooks)
        await self.conn.executemany(
            """INSERT INTO analytics_alert_state (webhook_id, metric, workspace_id)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            [(w, m, webhooks[w]) for w in ids for m in METRICS],
        )
        rows = await self.conn.fetch(
            """SELECT webhook_id, metric, firing, seq FROM analytics_alert_state
               WHERE webhook_id = ANY($1::uuid[])
               ORDER BY webhook_id, metric FOR UPDATE""",
            ids,
        )
        return {(r["webhook_id"], r["metric"]): AlertState(r["firing"], r["seq"]) for r in rows}

    async def thresholds(
        self, webhook_ids: Sequence[uuid.UUID], defaults: Thresholds
    ) -> dict[uuid.UUID, Thresholds]:
        rows = await self.conn.fetch(
            """SELECT webhook_id, error_rate_percent, p95_ms, min_requests, window_minutes,
                      enabled
               FROM analytics_alert_thresholds WHERE webhook_id = ANY($1::uuid[])""",
            list(webhook_ids),
        )
        out = dict.fromkeys(webhook_ids, defaults)
        for r in rows:
            out[r["webhook_id"]] = with_overrides(defaults, r)
        return out

    async def window_stats(
        self, starts: Mapping[uuid.UUID, datetime], *, accuracy: float
    ) -> dict[uuid.UUID, WindowStats]:
        if not starts:
            return {}
        rows = await self.conn.fetch(
            """SELECT webhook_id, minute, total, failed, rejected, sketch
               FROM analytics_minutes WHERE webhook_id = ANY($1::uuid[]) AND minute >= $2""",
            sorted(starts),
            min(starts.values()),
        )
        return window_stats(starts, rows, accuracy=accuracy)

    async def save_transition(self, webhook_id: uuid.UUID, t: Transition) -> None:
        await self.conn.execute(
            """UPDATE analytics_alert_state
               SET firing = $3, seq = $4, value = $5, threshold = $6, changed_at = $7
               WHERE webhook_id = $1 AND metric = $2""",
            webhook_id,
            t.metric,
            t.state.firing,
            t.state.seq,
            t.value,
            t.threshold,
            t.event.occurred_at,
        )
        await self.conn.execute(
            """INSERT INTO analytics_alert_outbox (event_id, webhook_id, payload)
               VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING""",
            t.event.event_id,
            webhook_id,
            t.event.model_dump(mode="json"),
        )

    async def firing_webhooks(self) -> dict[uuid.UUID, uuid.UUID]:
        rows = await self.conn.fetch(
            "SELECT DISTINCT webhook_id, workspace_id FROM analytics_alert_state WHERE firing"
        )
        return {r["webhook_id"]: r["workspace_id"] for r in rows}

    async def claim_pending_alerts(self, limit: int = 100) -> list[PerformanceAlert]:
        rows = await self.conn.fetch(
            """SELECT payload FROM analytics_alert_outbox
               WHERE published_at IS NULL ORDER BY created_at
               LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        return [PerformanceAlert.model_validate(r["payload"]) for r in rows]

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        await self.conn.execute(
            """UPDATE analytics_alert_outbox SET published_at = now()
               WHERE event_id = ANY($1::uuid[])""",
            list(event_ids),
        )


# --- the read side ---------------------------------------------------------------

_A_TOTALS = "a.total, a.processed, a.failed, a.rejected, a.duration_sum"


def _totals(r: Mapping[str, Any]) -> TotalsRow:
    """Sums come back as numeric (Decimal) or NULL: plain ints and floats."""
    return TotalsRow(
        total=int(r["total"] or 0),
        processed=int(r["processed"] or 0),
        failed=int(r["failed"] or 0),
        rejected=int(r["rejected"] or 0),
        duration_sum=float(r["duration_sum"] or 0.0),
    )


def _webhook(r: Mapping[str, Any]) -> WebhookRow:
    return WebhookRow(
        webhook_id=r["webhook_id"],
        workspace_id=r["workspace_id"],
        name=r["name"],
        sketch=r["sketch"] or {},
        last_seen_at=r["last_seen_at"],
        **_totals(r),
    )


class PostgresAnalytics(DeadLetterReads, VendorSql, Retention):
    """:class:`AnalyticsRepository` on an asyncpg pool (the dead letters' and the vendor
    scorecards' reads, and the pruning, from their modules' bases). In a :meth:`snapshot`, ``pool`` is the
    snapshot's connection."""

    def __init__(self, pool: asyncpg.Pool, *, pinned: bool = False) -> None:
        self.pool, self.pinned = pool, pinned

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AnalyticsRepository]:
        """Reads on one connection in one REPEATABLE READ transaction: every figure of a
        read-out from the same committed state (a batch counted meanwhile is in none)."""
        if self.pinned:
            yield self
            return
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield PostgresAnalytics(conn, pinned=True)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AnalyticsTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    async def ping(self) -> bool:
        return bool(await self.pool.fetchval("SELECT 1"))

    async def webhook_row(self, webhook_id: uuid.UUID) -> WebhookRow | None:
        row = await self.pool.fetchrow(
            f"""SELECT $1::uuid AS webhook_id,
                       COALESCE(a.workspace_id, w.workspace_id) AS workspace_id, w.name,
                       {_A_TOTALS}, a.sketch, a.last_seen_at,
                       (a.webhook_id IS NOT NULL OR w.id IS NOT NULL) AS known
                FROM (SELECT 1) AS one
                LEFT JOIN analytics_webhooks a ON a.webhook_id = $1
                LEFT JOIN webhooks w ON w.id = $1""",
            webhook_id,
        )
        if row is None or not row["known"]:
            return None
        return _webhook(row)

    async def workspace_rows(self, workspace_id: uuid.UUID) -> list[WebhookRow]:
        rows = await self.pool.fetch(
            f"""SELECT a.webhook_id, a.workspace_id, w.name, {_A_TOTALS},
                       a.sketch, a.last_seen_at
                FROM analytics_webhooks a LEFT JOIN webhooks w ON w.id = a.webhook_id
                WHERE a.workspace_id = $1
                UNION ALL
                SELECT w.id, w.workspace_id, w.name, 0, 0, 0, 0, 0.0, '{{}}'::jsonb, NULL
                FROM webhooks w
                WHERE w.workspace_id = $1
                  AND NOT EXISTS (SELECT 1 FROM analytics_webhooks a WHERE a.webhook_id = w.id
                                  AND a.workspace_id = $1)""",
            workspace_id,
        )
        return [_webhook(r) for r in rows]

    async def workspace_name(self, workspace_id: uuid.UUID) -> tuple[bool, str | None]:
        name = await self.pool.fetchval("SELECT name FROM workspaces WHERE id = $1", workspace_id)
        if name is not None:
            return True, name
        known = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM analytics_webhooks WHERE workspace_id = $1)",
            workspace_id,
        )
        return bool(known), None

    async def window_totals(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> dict[uuid.UUID, TotalsRow]:
        rows = await self.pool.fetch(
            """SELECT webhook_id, sum(total) AS total, sum(processed) AS processed,
                      sum(failed) AS failed, sum(rejected) AS rejected,
                      sum(duration_sum) AS duration_sum
               FROM analytics_minutes
               WHERE webhook_id = ANY($1::uuid[]) AND minute >= $2
               GROUP BY webhook_id""",
            list(webhook_ids),
            since,
        )
        return {r["webhook_id"]: _totals(r) for r in rows}

    async def breakdowns(self, webhook_ids: Sequence[uuid.UUID]) -> list[BreakdownRow]:
        rows = await self.pool.fetch(
            """SELECT webhook_id, dimension, name, count, sum_ms FROM analytics_breakdowns
               WHERE webhook_id = ANY($1::uuid[])""",
            list(webhook_ids),
        )
        return [cast(BreakdownRow, dict(r)) for r in rows]

    async def recent_errors(
        self, webhook_ids: Sequence[uuid.UUID], per_webhook: int
    ) -> list[RecentError]:
        rows = await self.pool.fetch(
            """SELECT event_id, request_id, webhook_id, occurred_at, status, error_type,
                      message
               FROM (
                   SELECT *, row_number() OVER (
                       PARTITION BY webhook_id ORDER BY occurred_at DESC, event_id) AS rn
                   FROM analytics_recent_errors WHERE webhook_id = ANY($1::uuid[])
               ) AS e
               WHERE rn <= $2 ORDER BY occurred_at DESC""",
            list(webhook_ids),
            per_webhook,
        )
        return [RecentError(**r) for r in rows]

    async def alert_states(self, webhook_ids: Sequence[uuid.UUID]) -> list[AlertRow]:
        rows = await self.pool.fetch(
            """SELECT webhook_id, metric, firing, value, threshold, changed_at
               FROM analytics_alert_state
               WHERE webhook_id = ANY($1::uuid[]) AND (firing OR seq > 0)
               ORDER BY webhook_id, metric""",
            list(webhook_ids),
        )
        return [cast(AlertRow, dict(r)) for r in rows]

    async def minutes(
        self, webhook_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[MinuteRow]:
        rows = await self.pool.fetch(
            """SELECT minute, total, processed, failed, rejected, duration_sum, sketch
               FROM analytics_minutes
               WHERE webhook_id = $1 AND minute >= $2 AND minute <= $3 ORDER BY minute""",
            webhook_id,
            start,
            end,
        )
        return [MinuteRow(minute=r["minute"], sketch=r["sketch"], **_totals(r)) for r in rows]

    async def workspace_minutes(
        self, workspace_id: uuid.UUID, start: datetime
    ) -> list[MinuteCounts]:
        rows = await self.pool.fetch(
            """SELECT webhook_id, minute, processed, failed, rejected
               FROM analytics_minutes WHERE workspace_id = $1 AND minute >= $2""",
            workspace_id,
            start,
        )
        return [cast(MinuteCounts, dict(r)) for r in rows]

    async def workspaces(self) -> list[WorkspaceRow]:
        rows = await self.pool.fetch(
            """SELECT COALESCE(a.workspace_id, ws.id) AS workspace_id, ws.name,
                      COALESCE(a.webhooks, 0) AS webhooks, COALESCE(a.total, 0) AS total,
                      a.last_seen_at
               FROM (SELECT workspace_id, count(*) AS webhooks, sum(total) AS total,
                            max(last_seen_at) AS last_seen_at
                     FROM analytics_webhooks GROUP BY workspace_id) AS a
               FULL OUTER JOIN workspaces ws ON ws.id = a.workspace_id
               ORDER BY a.last_seen_at DESC NULLS LAST, ws.name"""
        )
        return [
            cast(WorkspaceRow, {**r, "webhooks": int(r["webhooks"]), "total": int(r["total"])})
            for r in rows
        ]

    async def metrics_rows(
        self, limit: int, since: datetime
    ) -> tuple[list[TopRow], RestRow, list[FiringRow]]:
        top = await self.pool.fetch(
            """WITH top AS (
                   SELECT * FROM analytics_webhooks ORDER BY last_seen_at DESC, webhook_id
                   LIMIT $1)
               SELECT t.webhook_id, t.workspace_id, t.total, t.processed, t.failed,
                      t.rejected, t.duration_sum, t.sketch,
                      COALESCE(d.total, 0) AS day_total,
                      COALESCE(d.processed, 0) AS day_processed
               FROM top t LEFT JOIN LATERAL (
                   SELECT sum(total) AS total, sum(processed) AS processed
                   FROM analytics_minutes m
                   WHERE m.webhook_id = t.webhook_id AND m.minute >= $2) d ON true""",
            limit,
            since,
        )
        rest = await self.pool.fetchrow(
            """SELECT count(*) AS webhooks, sum(total) AS total, sum(processed) AS processed,
                      sum(failed) AS failed, sum(rejected) AS rejected,
                      sum(duration_sum) AS duration_sum
               FROM (SELECT * FROM analytics_webhooks ORDER BY last_seen_at DESC, webhook_id
                     OFFSET $1) AS rest""",
            limit,
        )
        firing = await self.pool.fetch(
            "SELECT webhook_id, workspace_id, metric FROM analytics_alert_state WHERE firing"
        )
        assert rest is not None  # an aggregate without GROUP BY: always one row
        return (
            [
                TopRow(
                    webhook_id=r["webhook_id"],
                    workspace_id=r["workspace_id"],
                    sketch=r["sketch"],
                    day_total=int(r["day_total"]),
                    day_processed=int(r["day_processed"]),
                    **_totals(r),
                )
                for r in top
            ],
            RestRow(webhooks=int(rest["webhooks"]), **_totals(rest)),
            [cast(FiringRow, dict(r)) for r in firing],
        )
