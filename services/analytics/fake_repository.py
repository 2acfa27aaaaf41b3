"""An in-memory :class:`~services.analytics.repository.AnalyticsRepository` for unit tests.

It keeps the same tables as Postgres (as dicts) and answers the same questions: the
exactly-once gate, the increments, the alert states and outbox, and every read. A
transaction runs one at a time (as the row locks make them queue up in Postgres) and is
undone if its block raises; dashboards' notifications count only once committed.
``tests/integration/test_analytics_repository.py`` holds it to the asyncpg implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.analytics import fake_vendor_repository as vendors
from services.analytics.aggregate import Counts, WebhookDelta
from services.analytics.alerts import (
    METRICS,
    AlertState,
    Thresholds,
    Transition,
    WindowStats,
    window_stats,
    with_overrides,
)
from services.analytics.deadletters import DeadLetterRow
from services.analytics.repository import (
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
from services.analytics.schemas import RecentError
from services.analytics.sketch import Bins, add_bins
from shared.events import Outcome, PerformanceAlert


@dataclass
class Aggregate:
    """A row of ``analytics_webhooks`` or ``analytics_minutes``."""

    workspace_id: uuid.UUID
    total: int = 0
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    duration_sum: float = 0.0
    sketch: Bins = field(default_factory=dict)
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def add(self, c: Counts) -> None:
        self.total += c.total
        self.processed += c.processed
        self.failed += c.failed
        self.rejected += c.rejected
        self.duration_sum += c.duration_sum
        self.sketch = add_bins(self.sketch, c.sketch.to_bins())

    def add_totals(self, other: Aggregate) -> None:
        """Add another row's counts (not its sketch), as ``sum(...)`` in SQL does."""
        self.total, self.processed = self.total + other.total, self.processed + other.processed
        self.failed, self.rejected = self.failed + other.failed, self.rejected + other.rejected
        self.duration_sum += other.duration_sum

    def totals(self) -> TotalsRow:
        t, p, f, r = self.total, self.processed, self.failed, self.rejected
        return TotalsRow(total=t, processed=p, failed=f, rejected=r, duration_sum=self.duration_sum)


@dataclass
class Alert:
    """A row of ``analytics_alert_state``."""

    workspace_id: uuid.UUID
    changed_at: datetime
    firing: bool = False
    seq: int = 0
    value: float | None = None
    threshold: float | None = None


@dataclass
class Queued:
    """A row of ``analytics_alert_outbox``."""

    event: PerformanceAlert
    order: int
    published_at: datetime | None = None


@dataclass
class Tables:
    counted: dict[uuid.UUID, datetime] = field(default_factory=dict)  # id -> occurred_at
    webhooks: dict[uuid.UUID, Aggregate] = field(default_factory=dict)
    minutes: dict[tuple[uuid.UUID, datetime], Aggregate] = field(default_factory=dict)
    # (webhook, dimension, name) -> [count, sum_ms]
    breakdowns: dict[tuple[uuid.UUID, str, str], list[float]] = field(default_factory=dict)
    errors: dict[uuid.UUID, RecentError] = field(default_factory=dict)
    alerts: dict[tuple[uuid.UUID, str], Alert] = field(default_factory=dict)
    # analytics_alert_thresholds: webhook -> {column: value or None}
    thresholds: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    outbox: dict[uuid.UUID, Queued] = field(default_factory=dict)
    # The configuration tables analytics reads names from: webhooks and workspaces.
    configured_webhooks: dict[uuid.UUID, tuple[uuid.UUID, str]] = field(default_factory=dict)
    configured_workspaces: dict[uuid.UUID, str] = field(default_factory=dict)
    # analytics_deadletters: (topic, partition, offset) -> row
    deadletters: dict[tuple[str, int, int], DeadLetterRow] = field(default_factory=dict)
    vendors: vendors.VendorTables = field(default_factory=vendors.VendorTables)  # migration 088


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(at: datetime | None) -> float:
    return at.timestamp() if at is not None else 0.0


class FakeTransaction:
    """:class:`~services.analytics.repository.AnalyticsTransaction` on the fake's tables."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables
        self.notified: list[uuid.UUID] = []

    async def claim_events(self, events: Sequence[Outcome]) -> set[uuid.UUID]:
        new: set[uuid.UUID] = set()
        for e in events:
            if e.event_id not in self.t.counted:
                self.t.counted[e.event_id] = e.occurred_at
                new.add(e.event_id)
        return new

    async def apply_deltas(self, deltas: Mapping[uuid.UUID, WebhookDelta]) -> None:
        vendors.add_vendor_deltas(self.t.vendors, deltas.values())
        for d in deltas.values():
            row = self.t.webhooks.setdefault(d.webhook_id, Aggregate(d.workspace_id))
            row.add(d.counts)
            row.first_seen = min(x for x in (row.first_seen, d.first_seen) if x is not None)
            row.last_seen = max(x for x in (row.last_seen, d.last_seen) if x is not None)
            for minute, counts in d.minutes.items():
                key = (d.webhook_id, minute)
                self.t.minutes.setdefault(key, Aggregate(d.workspace_id)).add(counts)
            for (dimension, name), (count, sum_ms) in d.breakdowns.items():
                entry = self.t.breakdowns.setdefault((d.webhook_id, dimension, name), [0, 0.0])
                entry[0] += int(count)
                entry[1] += float(sum_ms)
            for e in d.errors:
                self.t.errors.setdefault(
                    e.event_id,
                    RecentError(
                        event_id=e.event_id,
                        request_id=e.request_id,
                        webhook_id=d.webhook_id,
                        occurred_at=e.occurred_at,
                        status=e.status,
                        error_type=e.error_type,
                        message=e.message,
                    ),
                )

    async def notify_workspaces(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        self.notified.extend(sorted(set(workspace_ids)))

    async def lock_alert_states(
        self, webhooks: Mapping[uuid.UUID, uuid.UUID]
    ) -> dict[tuple[uuid.UUID, str], AlertState]:
        out: dict[tuple[uuid.UUID, str], AlertState] = {}
        for w in sorted(webhooks):
            for m in METRICS:
                row = self.t.alerts.setdefault((w, m), Alert(webhooks[w], _now()))
                out[(w, m)] = AlertState(row.firing, row.seq)
        return out

    async def thresholds(
        self, webhook_ids: Sequence[uuid.UUID], defaults: Thresholds
    ) -> dict[uuid.UUID, Thresholds]:
        return {
            w: with_overrides(defaults, self.t.thresholds[w])
            if w in self.t.thresholds
            else defaults
            for w in webhook_ids
        }

    async def window_stats(
        self, starts: Mapping[uuid.UUID, datetime], *, accuracy: float
    ) -> dict[uuid.UUID, WindowStats]:
        rows = [
            {"webhook_id": w, "minute": minute, "sketch": a.sketch, **a.totals()}
            for (w, minute), a in self.t.minutes.items()
            if w in starts
        ]
        return window_stats(starts, rows, accuracy=accuracy)

    async def save_transition(self, webhook_id: uuid.UUID, t: Transition) -> None:
        row = self.t.alerts[(webhook_id, t.metric)]
        row.firing, row.seq = t.state.firing, t.state.seq
        row.value, row.threshold, row.changed_at = t.value, t.threshold, t.event.occurred_at
        if t.event.event_id not in self.t.outbox:
            self.t.outbox[t.event.event_id] = Queued(t.event, order=len(self.t.outbox))

    async def firing_webhooks(self) -> dict[uuid.UUID, uuid.UUID]:
        return {w: a.workspace_id for (w, _m), a in self.t.alerts.items() if a.firing}

    async def claim_pending_alerts(self, limit: int = 100) -> list[PerformanceAlert]:
        pending = sorted(
            (q for q in self.t.outbox.values() if q.published_at is None), key=lambda q: q.order
        )
        return [q.event for q in pending[:limit]]

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        for event_id in event_ids:
            self.t.outbox[event_id].published_at = _now()


class FakeAnalytics(vendors.FakeVendorReads):
    """:class:`~services.analytics.repository.AnalyticsRepository` in memory."""

    def __init__(self, tables: Tables | None = None) -> None:
        self.tables = tables if tables is not None else Tables()
        # Workspaces whose dashboards were woken by a committed transaction, in order.
        self.notified: list[uuid.UUID] = []
        self.up = True  # ping() answers this
        self._lock = asyncio.Lock()
        self._in_snapshot = False

    # --- configuration (what the CLI writes to webhooks / workspaces) --------------

    def configure(
        self, workspace_id: uuid.UUID, name: str, webhooks: Mapping[uuid.UUID, str] | None = None
    ) -> None:
        """A workspace and its webhooks as the configuration tables hold them."""
        self.tables.configured_workspaces[workspace_id] = name
        for webhook_id, webhook_name in (webhooks or {}).items():
            self.tables.configured_webhooks[webhook_id] = (workspace_id, webhook_name)

    def add_deadletter(self, row: DeadLetterRow) -> None:
        """A dead letter as the dead-letter consumer counts it."""
        self.tables.deadletters.setdefault((row.topic, row.partition, row.offset), row)

    # --- writes ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AnalyticsTransaction]:
        async with self._lock:
            before = copy.deepcopy(self.tables)
            tx = FakeTransaction(self.tables)
            try:
                yield tx
            except BaseException:
                vars(self.tables).update(vars(before))  # rolled back
                raise
            self.notified.extend(tx.notified)

    # --- reads -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AnalyticsRepository]:
        """No transaction runs while a read-out reads (as one REPEATABLE READ snapshot)."""
        if self._in_snapshot:
            yield self
            return
        async with self._lock:
            self._in_snapshot = True
            try:
                yield self
            finally:
                self._in_snapshot = False

    async def ping(self) -> bool:
        return self.up

    def _webhook(self, webhook_id: uuid.UUID) -> WebhookRow | None:
        row = self.tables.webhooks.get(webhook_id)
        configured = self.tables.configured_webhooks.get(webhook_id)
        if row is None and configured is None:
            return None
        totals = row.totals() if row else Aggregate(uuid.UUID(int=0)).totals()
        return WebhookRow(
            webhook_id=webhook_id,
            workspace_id=row.workspace_id if row else configured[0] if configured else None,
            name=configured[1] if configured else None,
            sketch=dict(row.sketch) if row else {},
            last_seen_at=row.last_seen if row else None,
            **totals,
        )

    async def webhook_row(self, webhook_id: uuid.UUID) -> WebhookRow | None:
        return self._webhook(webhook_id)

    async def workspace_rows(self, workspace_id: uuid.UUID) -> list[WebhookRow]:
        counted = [w for w, a in self.tables.webhooks.items() if a.workspace_id == workspace_id]
        configured = [
            w
            for w, (ws, _name) in self.tables.configured_webhooks.items()
            if ws == workspace_id and w not in counted
        ]
        return [row for w in counted + configured if (row := self._webhook(w)) is not None]

    async def workspace_name(self, workspace_id: uuid.UUID) -> tuple[bool, str | None]:
        name = self.tables.configured_workspaces.get(workspace_id)
        if name is not None:
            return True, name
        known = any(a.workspace_id == workspace_id for a in self.tables.webhooks.values())
        return known, None

    async def window_totals(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> dict[uuid.UUID, TotalsRow]:
        sums: dict[uuid.UUID, Aggregate] = {}
        for (w, minute), a in self.tables.minutes.items():
            if w in webhook_ids and minute >= since:
                sums.setdefault(w, Aggregate(a.workspace_id)).add_totals(a)
        return {w: s.totals() for w, s in sums.items()}

    async def breakdowns(self, webhook_ids: Sequence[uuid.UUID]) -> list[BreakdownRow]:
        return [
            BreakdownRow(webhook_id=w, dimension=d, name=n, count=int(c), sum_ms=float(s))
            for (w, d, n), (c, s) in self.tables.breakdowns.items()
            if w in webhook_ids
        ]

    async def recent_errors(
        self, webhook_ids: Sequence[uuid.UUID], per_webhook: int
    ) -> list[RecentError]:
        out: list[RecentError] = []
        for w in set(webhook_ids):
            out += self._newest_errors(w)[:per_webhook]
        return sorted(out, key=lambda e: e.occurred_at, reverse=True)

    def _newest_errors(self, webhook_id: uuid.UUID) -> list[RecentError]:
        mine = [e for e in self.tables.errors.values() if e.webhook_id == webhook_id]
        mine.sort(key=lambda e: e.event_id)
        return sorted(mine, key=lambda e: e.occurred_at, reverse=True)

    async def alert_states(self, webhook_ids: Sequence[uuid.UUID]) -> list[AlertRow]:
        return [
            AlertRow(
                webhook_id=w,
                metric=m,
                firing=a.firing,
                value=a.value,
                threshold=a.threshold,
                changed_at=a.changed_at,
            )
            for (w, m), a in sorted(self.tables.alerts.items())
            if w in webhook_ids and (a.firing or a.seq > 0)
        ]

    async def minutes(
        self, webhook_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[MinuteRow]:
        return [
            MinuteRow(minute=minute, sketch=dict(a.sketch), **a.totals())
            for (w, minute), a in sorted(self.tables.minutes.items())
            if w == webhook_id and start <= minute <= end
        ]

    async def workspace_minutes(
        self, workspace_id: uuid.UUID, start: datetime
    ) -> list[MinuteCounts]:
        return [
            MinuteCounts(
                webhook_id=w,
                minute=minute,
                processed=a.processed,
                failed=a.failed,
                rejected=a.rejected,
            )
            for (w, minute), a in self.tables.minutes.items()
            if a.workspace_id == workspace_id and minute >= start
        ]

    async def workspaces(self) -> list[WorkspaceRow]:
        ids = {a.workspace_id for a in self.tables.webhooks.values()}
        ids |= set(self.tables.configured_workspaces)
        rows = []
        for ws in ids:
            mine = [a for a in self.tables.webhooks.values() if a.workspace_id == ws]
            seen = [a.last_seen for a in mine if a.last_seen is not None]
            rows.append(
                WorkspaceRow(
                    workspace_id=ws,
                    name=self.tables.configured_workspaces.get(ws),
                    webhooks=len(mine),
                    total=sum(a.total for a in mine),
                    last_seen_at=max(seen) if seen else None,
                )
            )
        # ORDER BY last_seen_at DESC NULLS LAST, name (NULL names last)
        rows.sort(
            key=lambda r: (
                r["last_seen_at"] is None,
                -_ts(r["last_seen_at"]),
                r["name"] is None,
                r["name"] or "",
            )
        )
        return rows

    async def metrics_rows(
        self, limit: int, since: datetime
    ) -> tuple[list[TopRow], RestRow, list[FiringRow]]:
        # ORDER BY last_seen_at DESC (NULLs first), webhook_id
        ordered = sorted(
            self.tables.webhooks.items(),
            key=lambda kv: (kv[1].last_seen is not None, -_ts(kv[1].last_seen), kv[0]),
        )
        day = await self.window_totals([w for w, _a in ordered[:limit]], since)
        top = [
            TopRow(
                webhook_id=w,
                workspace_id=a.workspace_id,
                sketch=dict(a.sketch),
                day_total=day[w]["total"] if w in day else 0,
                day_processed=day[w]["processed"] if w in day else 0,
                **a.totals(),
            )
            for w, a in ordered[:limit]
        ]
        rest = Aggregate(uuid.UUID(int=0))
        for _w, a in ordered[limit:]:
            rest.add_totals(a)
        firing = [
            FiringRow(webhook_id=w, workspace_id=a.workspace_id, metric=m)
            for (w, m), a in self.tables.alerts.items()
            if a.firing
        ]
        return top, RestRow(webhooks=len(ordered[limit:]), **rest.totals()), firing

    async def prune(
        self,
        *,
        counted_before: datetime,
        minutes_before: datetime,
        errors_per_webhook: int,
        vendors_before: datetime,
    ) -> dict[str, int]:
        t = self.tables
        counted = [k for k, at in t.counted.items() if at < counted_before]
        minutes = [k for k in t.minutes if k[1] < minutes_before]
        errors = [
            e.event_id
            for w in {e.webhook_id for e in t.errors.values()}
            for e in self._newest_errors(w)[errors_per_webhook:]
        ]
        week_ago = _now() - timedelta(days=7)
        outbox = [k for k, q in t.outbox.items() if q.published_at and q.published_at < week_ago]
        t.counted = {k: v for k, v in t.counted.items() if k not in set(counted)}
        t.minutes = {k: v for k, v in t.minutes.items() if k not in set(minutes)}
        t.errors = {k: v for k, v in t.errors.items() if k not in set(errors)}
        t.outbox = {k: v for k, v in t.outbox.items() if k not in set(outbox)}
        return vendors.prune_vendors(t.vendors, vendors_before) | {
            "counted_events": len(counted),
            "minutes": len(minutes),
            "recent_errors": len(errors),
            "alert_outbox": len(outbox),
        }

    async def deadletter_counts(self, webhook_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        wanted = set(webhook_ids)
        counts: dict[uuid.UUID, int] = {}
        for row in self.tables.deadletters.values():
            if row.webhook_id is not None and row.webhook_id in wanted:
                counts[row.webhook_id] = counts.get(row.webhook_id, 0) + 1
        return counts

    async def workspace_deadletters(self, workspace_id: uuid.UUID) -> int:
        return sum(r.workspace_id == workspace_id for r in self.tables.deadletters.values())

    async def deadletter_top(
        self, limit: int
    ) -> tuple[list[tuple[uuid.UUID | None, uuid.UUID, int]], int]:
        counts = await self.deadletter_counts(
            [r.webhook_id for r in self.tables.deadletters.values() if r.webhook_id]
        )
        ws = {r.webhook_id: r.workspace_id for r in self.tables.deadletters.values()}
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [(ws[w], w, n) for w, n in top], len(self.tables.deadletters)


if TYPE_CHECKING:  # mypy holds the fake to the protocol
    _conforms: AnalyticsRepository = FakeAnalytics()
    _conforms_tx: AnalyticsTransaction = FakeTransaction(Tables())
