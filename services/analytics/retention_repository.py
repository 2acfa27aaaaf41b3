"""Analytics' retention SQL: what :func:`~services.analytics.handlers.prune` drops (a
base of :class:`~services.analytics.postgres_repository.PostgresAnalytics`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg


class Retention:
    pool: asyncpg.Pool

    async def prune(
        self,
        *,
        counted_before: datetime,
        minutes_before: datetime,
        errors_per_webhook: int,
        vendors_before: datetime,
    ) -> dict[str, int]:
        """Drop counted ids and minutes past retention, all but the newest errors, the
        vendor scorecards' rows before ``vendors_before``, and published alerts after 7 days."""
        statements: dict[str, tuple[str, Sequence[object]]] = {
            "counted_events": (
                "DELETE FROM analytics_counted_events WHERE occurred_at < $1",
                (counted_before,),
            ),
            "minutes": ("DELETE FROM analytics_minutes WHERE minute < $1", (minutes_before,)),
            "recent_errors": (
                """DELETE FROM analytics_recent_errors e USING (
                       SELECT event_id, row_number() OVER (
                           PARTITION BY webhook_id ORDER BY occurred_at DESC, event_id) AS rn
                       FROM analytics_recent_errors) AS r
                   WHERE e.event_id = r.event_id AND r.rn > $1""",
                (errors_per_webhook,),
            ),
            # The vendor scorecards keep a day more than their longest window.
            "vendor_minutes": (
                "DELETE FROM analytics_vendor_minutes WHERE minute < $1",
                (vendors_before,),
            ),
            "vendor_accepted": (
                "DELETE FROM analytics_vendor_accepted WHERE received_at < $1",
                (vendors_before,),
            ),
            "alert_outbox": (
                """DELETE FROM analytics_alert_outbox
                   WHERE published_at IS NOT NULL AND published_at < now() - interval '7 days'""",
                (),
            ),
        }
        out: dict[str, int] = {}
        for name, (sql, args) in statements.items():
            status = await self.pool.execute(sql, *args)
            out[name] = int(status.rsplit(" ", 1)[-1])
        return out
