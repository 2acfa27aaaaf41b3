"""Analytics' vendor-scorecard SQL (migration 088): the per-minute counts and the accepted
leads written in the counting transaction, the windows read back, and speed-to-lead.

Exactly once: the increments are written by :class:`PostgresTransaction.apply_deltas`
in the same transaction as the counted event ids, so a redelivered or replayed outcome
adds nothing twice (and an accepted lead's row is keyed by its event id).

Speed-to-lead comes from the notifier's ledger (``notification_sends``, migration 030):
an accepted lead's ``first_sent_at`` is the earliest ``sent_at`` of an email or SMS row
the notifier marked ``sent`` for its event id (the same origin, ``received_at``, as the
notifier's ``leadwire_notification_delay_seconds``). It is copied when the lead is
counted (one probe of the ledger's ``(event_id, ...)`` key: a send made before analytics
counted the lead) and by :meth:`VendorSql.sync_deliveries` (a range scan by ``sent_at``
of the sends made since its last round, with an overlap for late commits). Reads are then
plain aggregates of analytics' own table. Real-time pushes are not counted: they are
marked sent when published, whether or not anyone watches. Analytics reads four columns
of the ledger and writes none of it.
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
# The notifier's ledger rows that count as a delivery to a person.
_DELIVERED = "n.status = 'sent' AND n.channel IN ('email', 'sms')"
# Seconds from an accepted lead's arrival to its first email or SMS sent.
_SECONDS = "greatest(extract(epoch FROM first_sent_at - received_at), 0)::float8 AS seconds"
_SPEED = (
    ("notified", "count(*)"),
    ("p50", "percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)"),
    ("p95", "percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)"),
)


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
            f"""INSERT INTO analytics_vendor_accepted
                    (event_id, webhook_id, workspace_id, received_at, first_sent_at)
                SELECT x.e, x.w, x.ws, x.r,
                       (SELECT min(n.sent_at) FROM notification_sends n
                        WHERE n.event_id = x.e AND {_DELIVERED})
                FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[])
                     AS x(e, w, ws, r)
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


def _by_window(
    rows: Sequence[Mapping[str, Any]], windows: list[str], count: str
) -> dict[uuid.UUID, dict[str, dict[str, Any]]]:
    """Each row's ``<figure>_<i>`` columns as {window: figures}, for the windows whose
    ``count`` is not zero."""
    out: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
    for r in rows:
        for i, win in enumerate(windows):
            figures = _figures({k[: -len(f"_{i}")]: v for k, v in r.items() if k.endswith(f"_{i}")})
            if figures.get(count):
                out.setdefault(r["webhook_id"], {})[win] = figures
    return out


class VendorSql:
    """The scorecards' reads and the delivery sync (a base of
    :class:`~services.analytics.postgres_repository.PostgresAnalytics`; the API reads
    inside its snapshot)."""

    pool: asyncpg.Pool

    async def vendor_rows(
        self, workspace_id: uuid.UUID, starts: Mapping[str, datetime]
    ) -> VendorRows:
        names = await self.pool.fetch(
            "SELECT id, name FROM webhooks WHERE workspace_id = $1", workspace_id
        )
        # One pass per table: every window's figures are FILTERed aggregates of the rows
        # of the longest one ($2, $3, ...: each window's first minute).
        starts_at = [f"${i + 2}::timestamptz" for i in range(len(starts))]
        since = f"LEAST({', '.join(starts_at)})"
        sums = await self.pool.fetch(
            f"""SELECT webhook_id, {
                ", ".join(
                    f"sum({c}) FILTER (WHERE minute >= {at}) AS {c}_{i}"
                    for i, at in enumerate(starts_at)
                    for c in COLUMNS
                )
            }
                FROM analytics_vendor_minutes
                WHERE workspace_id = $1 AND minute >= {since}
                GROUP BY webhook_id""",
            workspace_id,
            *starts.values(),
        )
        speeds = await self.pool.fetch(
            f"""WITH d AS (
                    SELECT webhook_id, received_at, {_SECONDS}
                    FROM analytics_vendor_accepted
                    WHERE workspace_id = $1 AND received_at >= {since}
                      AND first_sent_at IS NOT NULL)
                SELECT webhook_id, {
                ", ".join(
                    f"{aggregate} FILTER (WHERE received_at >= {at}) AS {name}_{i}"
                    for i, at in enumerate(starts_at)
                    for name, aggregate in _SPEED
                )
            }
                FROM d GROUP BY webhook_id""",
            workspace_id,
            *starts.values(),
        )
        return VendorRows(
            names={r["id"]: r["name"] for r in names},
            sums=_by_window(sums, list(starts), "received"),
            speeds=_by_window(speeds, list(starts), "notified"),
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
            f"""SELECT webhook_id, {", ".join(f"{agg} AS {name}" for name, agg in _SPEED)}
                FROM (SELECT webhook_id, {_SECONDS} FROM analytics_vendor_accepted
                      WHERE webhook_id = ANY($1::uuid[]) AND received_at >= $2
                        AND first_sent_at IS NOT NULL) AS d
                GROUP BY webhook_id""",
            ids,
            since,
        )
        return (
            {r["webhook_id"]: _figures(r) for r in sums},
            {r["webhook_id"]: _figures(r) for r in speeds},
        )

    async def sync_deliveries(self, *, since: datetime) -> int:
        """Copy the first email or SMS sent since ``since`` to its accepted lead (an
        earlier one wins; idempotent: a round may re-read the last one's sends). How many
        leads changed."""
        status = await self.pool.execute(
            f"""UPDATE analytics_vendor_accepted a SET first_sent_at = s.first
                FROM (SELECT n.event_id, min(n.sent_at) AS first FROM notification_sends n
                      WHERE {_DELIVERED} AND n.sent_at >= $1 GROUP BY n.event_id) AS s
                WHERE a.event_id = s.event_id
                  AND (a.first_sent_at IS NULL OR a.first_sent_at > s.first)""",
            since,
        )
        return int(status.rsplit(" ", 1)[-1])
