"""The vendor scorecards in memory: the fake's side of
:mod:`~services.analytics.vendor_repository` (a base of
:class:`~services.analytics.fake_repository.FakeAnalytics`), with the notifier's first
deliveries as a test sets them (:meth:`FakeVendorReads.deliver`)."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.analytics.aggregate import WebhookDelta
from services.analytics.vendors import COLUMNS, VendorRows

if TYPE_CHECKING:
    from services.analytics.fake_repository import Tables


@dataclass
class VendorTables:
    # analytics_vendor_minutes: (webhook, minute) -> (workspace, {column: count})
    minutes: dict[tuple[uuid.UUID, datetime], tuple[uuid.UUID, dict[str, int]]] = field(
        default_factory=dict
    )
    # analytics_vendor_accepted: event -> (webhook, workspace, received_at)
    accepted: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID, datetime]] = field(default_factory=dict)
    # The notifier's ledger as read: event -> when its first email or SMS was sent.
    delivered: dict[uuid.UUID, datetime] = field(default_factory=dict)


def add_vendor_deltas(t: VendorTables, deltas: Iterable[WebhookDelta]) -> None:
    for d in deltas:
        for minute, c in d.vendor.items():
            _, row = t.minutes.setdefault(
                (d.webhook_id, minute), (d.workspace_id, dict.fromkeys(COLUMNS, 0))
            )
            for column, n in zip(COLUMNS, c.row(), strict=True):
                row[column] += n
        for a in d.accepted:
            t.accepted.setdefault(a.event_id, (d.webhook_id, d.workspace_id, a.received_at))


def prune_vendors(t: VendorTables, before: datetime) -> dict[str, int]:
    minutes = [k for k in t.minutes if k[1] < before]
    accepted = [k for k, v in t.accepted.items() if v[2] < before]
    for key in minutes:
        del t.minutes[key]
    for event_id in accepted:
        del t.accepted[event_id]
    return {"vendor_minutes": len(minutes), "vendor_accepted": len(accepted)}


def _quantile(values: list[float], q: float) -> float:
    """Postgres' percentile_cont (linear interpolation between the closest ranks), to the
    millisecond."""
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)


def _speed(seconds: list[float]) -> dict[str, Any]:
    return {
        "notified": len(seconds),
        "p50": _quantile(seconds, 0.5),
        "p95": _quantile(seconds, 0.95),
    }


class FakeVendorReads:
    tables: Tables

    def deliver(self, event_id: uuid.UUID, sent_at: datetime) -> None:
        """The notifier sent an email or SMS for this event at ``sent_at`` (as counting or
        the delivery sync copies it)."""
        first = self.tables.vendors.delivered.get(event_id)
        self.tables.vendors.delivered[event_id] = min(sent_at, first or sent_at)

    async def sync_deliveries(self, *, since: datetime) -> int:
        return 0  # deliver() records a delivery as the sync would

    def _seconds(self, keep: Any) -> dict[uuid.UUID, list[tuple[datetime, float]]]:
        out: dict[uuid.UUID, list[tuple[datetime, float]]] = {}
        for event_id, (webhook, workspace, received) in self.tables.vendors.accepted.items():
            sent = self.tables.vendors.delivered.get(event_id)
            if sent is not None and keep(webhook, workspace):
                delay = max((sent - received).total_seconds(), 0.0)
                out.setdefault(webhook, []).append((received, delay))
        return out

    async def vendor_rows(
        self, workspace_id: uuid.UUID, starts: Mapping[str, datetime]
    ) -> VendorRows:
        sums: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        for (webhook, minute), (workspace, row) in self.tables.vendors.minutes.items():
            for win, start in starts.items():
                if workspace == workspace_id and minute >= start:
                    total = sums.setdefault(webhook, {}).setdefault(win, dict.fromkeys(COLUMNS, 0))
                    for column in COLUMNS:
                        total[column] += row[column]
        speeds: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        for webhook, delays in self._seconds(lambda _w, ws: ws == workspace_id).items():
            for win, start in starts.items():
                if inside := sorted(s for at, s in delays if at >= start):
                    speeds.setdefault(webhook, {})[win] = _speed(inside)
        names = {
            w: name
            for w, (ws, name) in self.tables.configured_webhooks.items()
            if ws == workspace_id
        }
        return VendorRows(names=dict(names), sums=sums, speeds=speeds)

    async def vendor_metrics(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> tuple[dict[uuid.UUID | None, dict[str, int]], dict[uuid.UUID, dict[str, Any]]]:
        wanted = set(webhook_ids)
        sums: dict[uuid.UUID | None, dict[str, int]] = {}
        for (webhook, minute), (_ws, row) in self.tables.vendors.minutes.items():
            if minute >= since:
                total = sums.setdefault(webhook if webhook in wanted else None, {})
                for column in COLUMNS:
                    total[column] = total.get(column, 0) + row[column]
        speeds = {
            webhook: _speed(sorted(s for at, s in delays if at >= since))
            for webhook, delays in self._seconds(lambda w, _ws: w in wanted).items()
            if any(at >= since for at, _ in delays)
        }
        return sums, speeds
