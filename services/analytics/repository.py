"""All of analytics' SQL, in one place (asyncpg).

Write functions take a connection inside the caller's transaction; read functions take
the pool. Rows that many batches update are written in a stable order (sorted keys) so
two replicas touching the same webhook queue up instead of deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.analytics.aggregate import Outcome, WebhookDelta
from services.analytics.alerts import METRICS, AlertState, Thresholds, Transition, WindowStats
from services.analytics.sketch import LatencySketch

NOTIFY_CHANNEL = "leadwire_analytics"


# --- write side: one batch, one transaction -------------------------------------------


async def claim_events(conn: asyncpg.Connection, events: Sequence[Outcome]) -> set[uuid.UUID]:
    """Record the events as counted; returns the ids that were not counted before.

    This is the exactly-once gate: the primary key on event_id with ON CONFLICT DO
    NOTHING means a redelivered or replayed event returns nothing here, so its
    increments are never applied a second time (and it commits with the increments).
    """
    if not events:
        return set()
    rows = await conn.fetch(
        """INSERT INTO analytics_counted_events (event_id, webhook_id, occurred_at)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
           ON CONFLICT (event_id) DO NOTHING
           RETURNING event_id""",
        [e.event_id for e in events],
        [e.webhook_id for e in events],
        [e.occurred_at for e in events],
    )
    return {r["event_id"] for r in rows}


async def apply_deltas(conn: asyncpg.Connection, deltas: Mapping[uuid.UUID, WebhookDelta]) -> None:
    ordered = [deltas[k] for k in sorted(deltas)]
    await conn.executemany(
        """INSERT INTO analytics_webhooks AS a
               (webhook_id, workspace_id, total, processed, failed, rejected, duration_sum,
                sketch, first_seen_at, last_seen_at)
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
            (
                d.webhook_id,
                d.workspace_id,
                d.counts.total,
                d.counts.processed,
                d.counts.failed,
                d.counts.rejected,
                d.counts.duration_sum,
                d.counts.sketch.to_bins(),
                d.first_seen,
                d.last_seen,
            )
            for d in ordered
        ],
    )
    minute_rows = [
        (
            d.webhook_id,
            minute,
            d.workspace_id,
            c.total,
            c.processed,
            c.failed,
            c.rejected,
            c.duration_sum,
            c.sketch.to_bins(),
        )
        for d in ordered
        for minute, c in sorted(d.minutes.items())
    ]
    await conn.executemany(
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
        minute_rows,
    )
    breakdown_rows = [
        (d.webhook_id, dim, name, int(v[0]), float(v[1]))
        for d in ordered
        for (dim, name), v in sorted(d.breakdowns.items())
    ]
    if breakdown_rows:
        await conn.executemany(
            """INSERT INTO analytics_breakdowns AS b (webhook_id, dimension, name, count, sum_ms)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (webhook_id, dimension, name) DO UPDATE SET
                   count = b.count + EXCLUDED.count,
                   sum_ms = b.sum_ms + EXCLUDED.sum_ms""",
            breakdown_rows,
        )
    error_rows = [
        (
            e.event_id,
            d.webhook_id,
            d.workspace_id,
            e.request_id,
            e.occurred_at,
            e.status,
            e.error_type,
            e.message,
        )
        for d in ordered
        for e in d.errors
    ]
    if error_rows:
        await conn.executemany(
            """INSERT INTO analytics_recent_errors
                   (event_id, webhook_id, workspace_id, request_id, occurred_at, status,
                    error_type, message)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (event_id) DO NOTHING""",
            error_rows,
        )


async def notify_workspaces(conn: asyncpg.Connection, workspace_ids: Iterable[uuid.UUID]) -> None:
    """Tell every replica's live dashboards (LISTEN) on commit; nothing if rolled back."""
    for ws in sorted(set(workspace_ids)):
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(ws))


# --- alerts -------------------------------------------------------------------------


async def lock_alert_states(
    conn: asyncpg.Connection, webhooks: Mapping[uuid.UUID, uuid.UUID]
) -> dict[tuple[uuid.UUID, str], AlertState]:
    """The alert states of these webhooks (webhook -> workspace), row-locked until commit."""
    ids = sorted(webhooks)
    await conn.executemany(
        """INSERT INTO analytics_alert_state (webhook_id, metric, workspace_id)
           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
        [(w, m, webhooks[w]) for w in ids for m in METRICS],
    )
    rows = await conn.fetch(
        """SELECT webhook_id, metric, firing, seq FROM analytics_alert_state
           WHERE webhook_id = ANY($1::uuid[])
           ORDER BY webhook_id, metric FOR UPDATE""",
        ids,
    )
    return {(r["webhook_id"], r["metric"]): AlertState(r["firing"], r["seq"]) for r in rows}


async def thresholds(
    conn: asyncpg.Connection, webhook_ids: Sequence[uuid.UUID], defaults: Thresholds
) -> dict[uuid.UUID, Thresholds]:
    rows = await conn.fetch(
        """SELECT webhook_id, error_rate_percent, p95_ms, min_requests, window_minutes, enabled
           FROM analytics_alert_thresholds WHERE webhook_id = ANY($1::uuid[])""",
        list(webhook_ids),
    )
    out = dict.fromkeys(webhook_ids, defaults)
    for r in rows:
        out[r["webhook_id"]] = Thresholds(
            error_rate_percent=r["error_rate_percent"]
            if r["error_rate_percent"] is not None
            else defaults.error_rate_percent,
            p95_ms=r["p95_ms"] if r["p95_ms"] is not None else defaults.p95_ms,
            min_requests=r["min_requests"]
            if r["min_requests"] is not None
            else defaults.min_requests,
            window_minutes=r["window_minutes"]
            if r["window_minutes"] is not None
            else defaults.window_minutes,
            enabled=r["enabled"],
        )
    return out


async def window_stats(
    conn: asyncpg.Connection, starts: Mapping[uuid.UUID, datetime], *, accuracy: float
) -> dict[uuid.UUID, WindowStats]:
    """Requests, errors and p95 per webhook from its window's first minute on."""
    if not starts:
        return {}
    ids = sorted(starts)
    rows = await conn.fetch(
        """SELECT webhook_id, minute, total, failed, rejected, sketch FROM analytics_minutes
           WHERE webhook_id = ANY($1::uuid[]) AND minute >= $2""",
        ids,
        min(starts.values()),
    )
    acc: dict[uuid.UUID, tuple[int, int, LatencySketch]] = {
        w: (0, 0, LatencySketch(accuracy)) for w in ids
    }
    for r in rows:
        w = r["webhook_id"]
        if r["minute"] < starts[w]:
            continue
        total, errors, sketch = acc[w]
        sketch.merge_bins(r["sketch"])
        acc[w] = (total + r["total"], errors + r["failed"] + r["rejected"], sketch)
    return {
        w: WindowStats(requests=t, errors=e, p95_ms=s.quantile(0.95))
        for w, (t, e, s) in acc.items()
    }


async def save_transition(conn: asyncpg.Connection, webhook_id: uuid.UUID, t: Transition) -> None:
    await conn.execute(
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
    await conn.execute(
        """INSERT INTO analytics_alert_outbox (event_id, webhook_id, payload)
           VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING""",
        t.event.event_id,
        webhook_id,
        t.event.model_dump(mode="json"),
    )


async def firing_webhooks(conn: asyncpg.Connection) -> dict[uuid.UUID, uuid.UUID]:
    rows = await conn.fetch(
        "SELECT DISTINCT webhook_id, workspace_id FROM analytics_alert_state WHERE firing"
    )
    return {r["webhook_id"]: r["workspace_id"] for r in rows}


async def claim_pending_alerts(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Unpublished alert events, locked so two replicas do not publish one at once."""
    return list(
        await conn.fetch(
            """SELECT event_id, webhook_id, payload FROM analytics_alert_outbox
               WHERE published_at IS NULL ORDER BY created_at
               LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
    )


async def mark_published(conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE analytics_alert_outbox SET published_at = now() WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )


# --- read side ----------------------------------------------------------------------

_TOTALS = "total, processed, failed, rejected, duration_sum"
_A_TOTALS = "a.total, a.processed, a.failed, a.rejected, a.duration_sum"


async def ping(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT 1"))


async def webhook_row(pool: asyncpg.Pool, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    """The webhook's all-time figures joined with its name; None if neither exists."""
    row = await pool.fetchrow(
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
    return dict(row)


async def workspace_rows(pool: asyncpg.Pool, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every webhook of the workspace: those with figures, and configured ones without."""
    rows = await pool.fetch(
        f"""SELECT a.webhook_id, a.workspace_id, w.name, {_A_TOTALS},
                   a.sketch, a.last_seen_at
            FROM analytics_webhooks a LEFT JOIN webhooks w ON w.id = a.webhook_id
            WHERE a.workspace_id = $1""",
        workspace_id,
    )
    out = [dict(r) for r in rows]
    seen = {r["webhook_id"] for r in out}
    for r in await pool.fetch(
        "SELECT id, workspace_id, name FROM webhooks WHERE workspace_id = $1", workspace_id
    ):
        if r["id"] not in seen:
            out.append(
                {
                    "webhook_id": r["id"],
                    "workspace_id": r["workspace_id"],
                    "name": r["name"],
                    "total": 0,
                    "processed": 0,
                    "failed": 0,
                    "rejected": 0,
                    "duration_sum": 0.0,
                    "sketch": {},
                    "last_seen_at": None,
                }
            )
    return out


async def workspace_name(pool: asyncpg.Pool, workspace_id: uuid.UUID) -> tuple[bool, str | None]:
    name = await pool.fetchval("SELECT name FROM workspaces WHERE id = $1", workspace_id)
    if name is not None:
        return True, name
    known = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM analytics_webhooks WHERE workspace_id = $1)", workspace_id
    )
    return bool(known), None


async def window_totals(
    pool: asyncpg.Pool, webhook_ids: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT webhook_id, sum(total) AS total, sum(processed) AS processed,
                   sum(failed) AS failed, sum(rejected) AS rejected,
                   sum(duration_sum) AS duration_sum
            FROM analytics_minutes
            WHERE webhook_id = ANY($1::uuid[]) AND minute >= $2
            GROUP BY webhook_id""",
        list(webhook_ids),
        since,
    )
    return {r["webhook_id"]: dict(r) for r in rows}


async def breakdowns(pool: asyncpg.Pool, webhook_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT webhook_id, dimension, name, count, sum_ms FROM analytics_breakdowns
               WHERE webhook_id = ANY($1::uuid[])""",
            list(webhook_ids),
        )
    )


async def recent_errors(
    pool: asyncpg.Pool, webhook_ids: Sequence[uuid.UUID], per_webhook: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT event_id, request_id, webhook_id, occurred_at, status, error_type, message
               FROM (
                   SELECT *, row_number() OVER (
                       PARTITION BY webhook_id ORDER BY occurred_at DESC, event_id) AS rn
                   FROM analytics_recent_errors WHERE webhook_id = ANY($1::uuid[])
               ) AS e
               WHERE rn <= $2 ORDER BY occurred_at DESC""",
            list(webhook_ids),
            per_webhook,
        )
    )


async def alert_states(
    pool: asyncpg.Pool, webhook_ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT webhook_id, metric, firing, value, threshold, changed_at
               FROM analytics_alert_state
               WHERE webhook_id = ANY($1::uuid[]) AND (firing OR seq > 0)
               ORDER BY webhook_id, metric""",
            list(webhook_ids),
        )
    )


async def minutes(
    pool: asyncpg.Pool, webhook_id: uuid.UUID, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"""SELECT minute, {_TOTALS}, sketch FROM analytics_minutes
                WHERE webhook_id = $1 AND minute >= $2 AND minute <= $3 ORDER BY minute""",
            webhook_id,
            start,
            end,
        )
    )


async def workspace_minutes(
    pool: asyncpg.Pool, workspace_id: uuid.UUID, start: datetime
) -> list[asyncpg.Record]:
    """Counts (no sketches) per webhook and minute, for the dashboard's charts."""
    return list(
        await pool.fetch(
            """SELECT webhook_id, minute, total, processed, failed, rejected
               FROM analytics_minutes WHERE workspace_id = $1 AND minute >= $2""",
            workspace_id,
            start,
        )
    )


async def workspaces(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT COALESCE(a.workspace_id, ws.id) AS workspace_id, ws.name,
                      COALESCE(a.webhooks, 0) AS webhooks, COALESCE(a.total, 0) AS total,
                      a.last_seen_at
               FROM (SELECT workspace_id, count(*) AS webhooks, sum(total) AS total,
                            max(last_seen_at) AS last_seen_at
                     FROM analytics_webhooks GROUP BY workspace_id) AS a
               FULL OUTER JOIN workspaces ws ON ws.id = a.workspace_id
               ORDER BY a.last_seen_at DESC NULLS LAST, ws.name"""
        )
    )


async def metrics_rows(
    pool: asyncpg.Pool, limit: int, since: datetime
) -> tuple[list[asyncpg.Record], asyncpg.Record | None, list[asyncpg.Record]]:
    """(the ``limit`` most recently active webhooks with their 24 h sums, the sum of all
    other webhooks, the firing alerts of the listed webhooks)."""
    top = list(
        await pool.fetch(
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
    )
    rest = await pool.fetchrow(
        """SELECT count(*) AS webhooks, COALESCE(sum(total), 0) AS total,
                  COALESCE(sum(processed), 0) AS processed, COALESCE(sum(failed), 0) AS failed,
                  COALESCE(sum(rejected), 0) AS rejected,
                  COALESCE(sum(duration_sum), 0) AS duration_sum
           FROM (SELECT * FROM analytics_webhooks ORDER BY last_seen_at DESC, webhook_id
                 OFFSET $1) AS rest""",
        limit,
    )
    alerts = list(
        await pool.fetch(
            "SELECT webhook_id, workspace_id, metric FROM analytics_alert_state WHERE firing"
        )
    )
    return top, rest, alerts


# --- retention ----------------------------------------------------------------------


async def prune(
    pool: asyncpg.Pool,
    *,
    counted_before: datetime,
    minutes_before: datetime,
    errors_per_webhook: int,
) -> dict[str, int]:
    def _n(status: str) -> int:
        return int(status.rsplit(" ", 1)[-1])

    out = {}
    out["counted_events"] = _n(
        await pool.execute(
            "DELETE FROM analytics_counted_events WHERE occurred_at < $1", counted_before
        )
    )
    out["minutes"] = _n(
        await pool.execute("DELETE FROM analytics_minutes WHERE minute < $1", minutes_before)
    )
    out["recent_errors"] = _n(
        await pool.execute(
            """DELETE FROM analytics_recent_errors e USING (
                   SELECT event_id, row_number() OVER (
                       PARTITION BY webhook_id ORDER BY occurred_at DESC, event_id) AS rn
                   FROM analytics_recent_errors) AS r
               WHERE e.event_id = r.event_id AND r.rn > $1""",
            errors_per_webhook,
        )
    )
    out["alert_outbox"] = _n(
        await pool.execute(
            """DELETE FROM analytics_alert_outbox
               WHERE published_at IS NOT NULL AND published_at < now() - interval '7 days'"""
        )
    )
    return out
