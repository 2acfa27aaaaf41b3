"""Analytics' dead-letter SQL: the dead letters counted (``analytics_deadletters``,
migration 070), their counts per webhook and workspace, and the growth alert's state
(``analytics_health_state``).

Exactly once: a dead letter's row is keyed by the topic, partition and offset of the
dead-letter message, inserted with ``ON CONFLICT DO NOTHING``; a redelivery or a replay
finds it there and counts nothing. The counts are ``count(*)`` over those rows (pruned
with the outcomes' dedupe horizon). The growth alert's row is read, decided on and
written under a row lock (replicas take turns) and is its own outbox: ``published``
stays false until Kafka has the event, which is derived from the row (the same id on
every attempt).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.analytics.deadletters import GROWTH_CHECK, DeadLetterRow, DecideGrowth, GrowthState


class DeadLetterReads:
    """The dead-letter counts the API and the Prometheus snapshot read (a base of
    :class:`~services.analytics.postgres_repository.PostgresAnalytics`)."""

    pool: asyncpg.Pool

    async def deadletter_counts(self, webhook_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Dead letters per webhook (only webhooks that have some)."""
        rows = await self.pool.fetch(
            """SELECT webhook_id, count(*) AS n FROM analytics_deadletters
               WHERE webhook_id = ANY($1::uuid[]) GROUP BY webhook_id""",
            list(webhook_ids),
        )
        return {r["webhook_id"]: int(r["n"]) for r in rows}

    async def workspace_deadletters(self, workspace_id: uuid.UUID) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM analytics_deadletters WHERE workspace_id = $1", workspace_id
            )
        )

    async def deadletter_top(
        self, limit: int
    ) -> tuple[list[tuple[uuid.UUID | None, uuid.UUID, int]], int]:
        """The ``limit`` webhooks with the most dead letters ((workspace, webhook, count),
        most first), and the number of all dead letters."""
        rows = await self.pool.fetch(
            """SELECT webhook_id, (array_agg(workspace_id ORDER BY workspace_id))[1] AS ws,
                      count(*) AS n
               FROM analytics_deadletters WHERE webhook_id IS NOT NULL
               GROUP BY webhook_id ORDER BY n DESC, webhook_id LIMIT $1""",
            limit,
        )
        total = await self.pool.fetchval("SELECT count(*) FROM analytics_deadletters")
        return [(r["ws"], r["webhook_id"], int(r["n"])) for r in rows], int(total)


class PostgresDeadLetters(DeadLetterReads):
    """The dead-letter consumer's and the growth check's storage."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, rows: Sequence[DeadLetterRow]) -> int:
        """Count the dead letters not counted before; returns how many were new."""
        if not rows:
            return 0
        inserted = await self.pool.fetch(
            """INSERT INTO analytics_deadletters
                   (topic, partition, "offset", source_topic, reason_code, group_id,
                    workspace_id, webhook_id, failed_at)
               SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[],
                                    $5::text[], $6::text[], $7::uuid[], $8::uuid[],
                                    $9::timestamptz[])
               ON CONFLICT DO NOTHING
               RETURNING 1""",
            [r.topic for r in rows],
            [r.partition for r in rows],
            [r.offset for r in rows],
            [r.source_topic for r in rows],
            [r.reason_code for r in rows],
            [r.group_id for r in rows],
            [r.workspace_id for r in rows],
            [r.webhook_id for r in rows],
            [r.failed_at for r in rows],
        )
        return len(inserted)

    async def update_growth(self, since: datetime, decide: DecideGrowth) -> GrowthState | None:
        """Under the state row's lock: the dead letters per reason that failed at or after
        ``since``, ``decide``, and the new state stored (unpublished). Returns it, or
        None when nothing changed."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO analytics_health_state ("check") VALUES ($1)
                   ON CONFLICT DO NOTHING""",
                GROWTH_CHECK,
            )
            row = await conn.fetchrow(
                """SELECT firing, since, detail, changed_at, published
                   FROM analytics_health_state WHERE "check" = $1 FOR UPDATE""",
                GROWTH_CHECK,
            )
            assert row is not None
            recent = await conn.fetch(
                """SELECT reason_code, count(*) AS n FROM analytics_deadletters
                   WHERE failed_at >= $1 GROUP BY reason_code""",
                since,
            )
            new = decide(GrowthState(**dict(row)), {r["reason_code"]: int(r["n"]) for r in recent})
            if new is not None:
                await conn.execute(
                    """UPDATE analytics_health_state
                       SET firing = $2, since = $3, detail = $4, changed_at = $5,
                           published = false
                       WHERE "check" = $1""",
                    GROWTH_CHECK,
                    new.firing,
                    new.since,
                    new.detail,
                    new.changed_at,
                )
            return new

    async def unpublished_growth(self) -> GrowthState | None:
        row = await self.pool.fetchrow(
            """SELECT firing, since, detail, changed_at, published FROM analytics_health_state
               WHERE "check" = $1 AND NOT published""",
            GROWTH_CHECK,
        )
        return GrowthState(**dict(row)) if row is not None else None

    async def mark_growth_published(self, changed_at: datetime) -> None:
        """Mark the transition of ``changed_at`` published (a newer one stays queued)."""
        await self.pool.execute(
            """UPDATE analytics_health_state SET published = true
               WHERE "check" = $1 AND changed_at = $2""",
            GROWTH_CHECK,
            changed_at,
        )

    async def prune(self, *, before: datetime) -> int:
        """Forget dead letters that failed before the dedupe horizon."""
        status = await self.pool.execute(
            "DELETE FROM analytics_deadletters WHERE failed_at < $1", before
        )
        return int(status.rsplit(" ", 1)[-1])
