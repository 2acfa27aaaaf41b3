"""Analytics' vendor-scorecard SQL (migration 088): the per-minute counts and the accepted
leads written in the counting transaction, the windows read back, and speed-to-lead.

Exactly once: the increments are written by :class:`PostgresTransaction.apply_deltas`
in the same transaction as the counted event ids, so a redelivered or replayed outcome
adds nothing twice (and an accepted lead's row is keyed by its event id).

Speed-to-lead is read at query time from the notifier's ledger (``notification_sends``,
migration 030): for each accepted lead of the window, the first email or SMS row the
notifier marked ``sent`` for its event id (the ledger's unique key starts with
``event_id``, so each lead is one index probe), minus the lead's ``received_at`` (the
same origin as the notifier's ``leadwire_notification_delay_seconds``). Real-time pushes
are not counted: they are marked sent when published, whether or not anyone watches. A
delivery the notifier has pruned (``LEADWIRE_NOTIFY_RETENTION_DAYS``, 30) is no longer
counted. Analytics reads four columns of that table and writes none of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.analytics.aggregate import WebhookDelta
from services.analytics.vendors import COLUMNS, VendorRows

_COLS = ", ".join(COLUMNS)
_SUMS = ", ".join(f"sum({c}) AS {c}" for c in COLUMNS)
_ADD = f"""INSERT INTO analytics_vendor_minutes AS v (webhook_id, minute, workspace_id, {_COLS})
    VALUES ({", ".join(f"${i}" for i in range(1, len(COLUMNS) + 4))})
    ON CONFLICT (webhook_id, minute) DO UPDATE SET
    {", ".join(f"{c} = v.{c} + EXCLUDED.{c}" for c in COLUMNS)}"""
# Seconds from an accepted lead's arrival to its first email or SMS sent.
_FIRST_SENT = """CROSS JOIN LATERAL (
    SELECT extract(epoch FROM min(n.sent_at) - a.received_at)::float8 AS seconds
    FROM notification_sends n
    WHERE n.event_id = a.event_id AND n.status = 'sent' AND n.channel IN ('email', 'sms')) d"""
_SPEED = """count(*) AS notified,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY d.seconds) AS p95"""


async def add_vendor_counts(conn: asyncpg.Connection, ordered: Sequence[WebhookDelta]) -> None:
    """The scorecard's increments and accepted leads of a batch (inside its transaction;
    rows in the caller's stable order)."""
    await conn.executemany(
        _ADD,
        [
            (d.webhook_id, minute, d.workspace_id, *c.row())
            for d in ordered
            for minute, c in sorted(d.vendor.items())
        ],
    )
    accepted = [
        (a.event_id, d.webhook_id, d.workspace_id, a.received_at)
        for d in ordered
        for a in d.accepted
    ]
    if accepted:
        await conn.execute(
            """INSERT INTO analytics_vendor_accepted
                   (event_id, webhook_id, workspace_id, received_at)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[])
               ON CONFLICT (event_id) DO NOTHING""",
            *(list(col) for col in zip(*accepted, strict=True)),
        )


def _figures(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row's figures as plain ints (sums come back as numeric) and floats."""
    r = dict(record)
    out: dict[str, Any] = {c: int(r[c] or 0) for c in (*COLUMNS, "notified") if c in r}
    # Quantiles in seconds, to the millisecond.
    out.update({q: round(float(r[q]), 3) for q in ("p50", "p95") if r.get(q) is not None})
    return out


def _by_window(rows: Sequence[Mapping[str, Any]]) -> dict[uuid.UUID, dict[str, dict[str, Any]]]:
    out: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["webhook_id"], {})[r["win"]] = _figures(r)
    return out


class VendorReads:
    """The scorecards' reads (a base of
    :class:`~services.analytics.postgres_repository.PostgresAnalytics`; the API reads them
    inside its snapshot)."""

    pool: asyncpg.Pool

    async def vendor_rows(
        self, workspace_id: uuid.UUID, starts: Mapping[str, datetime]
    ) -> VendorRows:
        names = await self.pool.fetch(
            "SELECT id, name FROM webhooks WHERE workspace_id = $1", workspace_id
        )
        args = (workspace_id, list(starts), list(starts.values()), min(starts.values()))
        sums = await self.pool.fetch(
            f"""SELECT m.webhook_id, w.win, {_SUMS}
                FROM analytics_vendor_minutes m
                JOIN unnest($2::text[], $3::timestamptz[]) AS w(win, start)
                  ON m.minute >= w.start
                WHERE m.workspace_id = $1 AND m.minute >= $4
                GROUP BY m.webhook_id, w.win""",
            *args,
        )
        speeds = await self.pool.fetch(
            f"""SELECT a.webhook_id, w.win, {_SPEED}
                FROM analytics_vendor_accepted a {_FIRST_SENT}
                JOIN unnest($2::text[], $3::timestamptz[]) AS w(win, start)
                  ON a.received_at >= w.start
                WHERE a.workspace_id = $1 AND a.received_at >= $4 AND d.seconds IS NOT NULL
                GROUP BY a.webhook_id, w.win""",
            *args,
        )
        return VendorRows(
            names={r["id"]: r["name"] for r in names},
            sums=_by_window(sums),
            speeds=_by_window(speeds),
        )

    async def vendor_metrics(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> tuple[dict[uuid.UUID | None, dict[str, int]], dict[uuid.UUID, dict[str, Any]]]:
        """(the summed columns since ``since`` of each of ``webhook_ids``, and of every
        other webhook under None; speed-to-lead of each of ``webhook_ids``)."""
        ids = list(webhook_ids)
        sums = await self.pool.fetch(
            f"""SELECT CASE WHEN webhook_id = ANY($1::uuid[]) THEN webhook_id END AS webhook_id,
                       {_SUMS}
                FROM analytics_vendor_minutes WHERE minute >= $2 GROUP BY 1""",
            ids,
            since,
        )
        speeds = await self.pool.fetch(
            f"""SELECT a.webhook_id, {_SPEED}
                FROM analytics_vendor_accepted a {_FIRST_SENT}
                WHERE a.webhook_id = ANY($1::uuid[]) AND a.received_at >= $2
                  AND d.seconds IS NOT NULL
                GROUP BY a.webhook_id""",
            ids,
            since,
        )
        return (
            {r["webhook_id"]: _figures(r) for r in sums},
            {r["webhook_id"]: _figures(r) for r in speeds},
        )
