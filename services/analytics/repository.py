"""Analytics' storage: the :class:`AnalyticsRepository` protocol and the rows it answers.
Beside it: :mod:`~services.analytics.postgres_repository`, the asyncpg implementation (all
of analytics' SQL, in one place), and :mod:`~services.analytics.fake_repository`, the
in-memory fake the unit tests use (held to the same answers by an integration test).

Writes happen inside :meth:`AnalyticsRepository.transaction` (one batch, one transaction:
the counted ids, the increments, the alert transitions and the dashboards' notification
commit together or not at all). Rows that many batches update are written in a stable
order (sorted keys) so two replicas touching the same webhook queue up instead of
deadlocking. Reads answer the API, the dashboard and the Prometheus snapshot.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypedDict

from services.analytics.aggregate import WebhookDelta
from services.analytics.alerts import AlertState, Thresholds, Transition, WindowStats
from services.analytics.deadletters import DeadLetterRow, DecideGrowth, GrowthState
from services.analytics.schemas import RecentError
from services.analytics.sketch import Bins
from services.analytics.vendors import VendorRows
from shared.events import Outcome, PerformanceAlert

NOTIFY_CHANNEL = "leadwire_analytics"


# --- rows ---------------------------------------------------------------------------


class TotalsRow(TypedDict):
    total: int
    processed: int
    failed: int
    rejected: int
    duration_sum: float


class WebhookRow(TotalsRow):
    """A webhook's all-time figures, with its configured name (if it is configured)."""

    webhook_id: uuid.UUID
    workspace_id: uuid.UUID | None
    name: str | None
    sketch: Bins
    last_seen_at: datetime | None


class MinuteRow(TotalsRow):
    minute: datetime
    sketch: Bins


class MinuteCounts(TypedDict):
    webhook_id: uuid.UUID
    minute: datetime
    processed: int
    failed: int
    rejected: int


class BreakdownRow(TypedDict):
    webhook_id: uuid.UUID
    dimension: str
    name: str
    count: int
    sum_ms: float


class AlertRow(TypedDict):
    webhook_id: uuid.UUID
    metric: str
    firing: bool
    value: float | None
    threshold: float | None
    changed_at: datetime


class WorkspaceRow(TypedDict):
    workspace_id: uuid.UUID
    name: str | None
    webhooks: int
    total: int
    last_seen_at: datetime | None


class TopRow(TotalsRow):
    """One of the most recently active webhooks, with its last 24 h sums."""

    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    sketch: Bins
    day_total: int
    day_processed: int


class RestRow(TotalsRow):
    """Every other webhook, summed."""

    webhooks: int


class FiringRow(TypedDict):
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    metric: str


# --- the protocol -------------------------------------------------------------------


class AnalyticsTransaction(Protocol):
    """The writes of one batch (or one sweep, one outbox round), in one transaction."""

    async def claim_events(self, events: Sequence[Outcome]) -> set[uuid.UUID]:
        """Record the events as counted; returns the ids that were not counted before.

        This is the exactly-once gate: a redelivered or replayed event returns nothing
        here, so its increments are never applied a second time (and it commits with the
        increments)."""
        ...

    async def apply_deltas(self, deltas: Mapping[uuid.UUID, WebhookDelta]) -> None: ...

    async def notify_workspaces(self, workspace_ids: Iterable[uuid.UUID]) -> None:
        """Wake every replica's live dashboards of these workspaces, on commit."""
        ...

    async def lock_alert_states(
        self, webhooks: Mapping[uuid.UUID, uuid.UUID]
    ) -> dict[tuple[uuid.UUID, str], AlertState]:
        """The alert states of these webhooks (webhook -> workspace), locked until commit."""
        ...

    async def thresholds(
        self, webhook_ids: Sequence[uuid.UUID], defaults: Thresholds
    ) -> dict[uuid.UUID, Thresholds]: ...

    async def window_stats(
        self, starts: Mapping[uuid.UUID, datetime], *, accuracy: float
    ) -> dict[uuid.UUID, WindowStats]:
        """Requests, errors and p95 per webhook from its window's first minute on."""
        ...

    async def save_transition(self, webhook_id: uuid.UUID, t: Transition) -> None:
        """Store the new alert state and queue its event in the outbox."""
        ...

    async def firing_webhooks(self) -> dict[uuid.UUID, uuid.UUID]: ...

    async def claim_pending_alerts(self, limit: int = 100) -> list[PerformanceAlert]:
        """Unpublished alert events, oldest first, locked so two replicas do not publish
        one at once."""
        ...

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None: ...


class AnalyticsRepository(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[AnalyticsTransaction]: ...

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[AnalyticsRepository]:
        """The reads of one read-out, all from one committed state (Postgres: one
        REPEATABLE READ transaction); inside one, ``snapshot()`` is itself."""
        ...

    async def ping(self) -> bool: ...

    async def webhook_row(self, webhook_id: uuid.UUID) -> WebhookRow | None:
        """The webhook's all-time figures and name; None if it is neither counted nor
        configured."""
        ...

    async def workspace_rows(self, workspace_id: uuid.UUID) -> list[WebhookRow]:
        """Every webhook of the workspace: those with figures, and configured ones without."""
        ...

    async def workspace_name(self, workspace_id: uuid.UUID) -> tuple[bool, str | None]:
        """(known, name): known if configured or counted; a name if configured."""
        ...

    async def window_totals(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> dict[uuid.UUID, TotalsRow]: ...

    async def breakdowns(self, webhook_ids: Sequence[uuid.UUID]) -> list[BreakdownRow]: ...

    async def recent_errors(
        self, webhook_ids: Sequence[uuid.UUID], per_webhook: int
    ) -> list[RecentError]:
        """The newest ``per_webhook`` errors of each webhook, newest first."""
        ...

    async def alert_states(self, webhook_ids: Sequence[uuid.UUID]) -> list[AlertRow]:
        """Alerts that fire or have fired, by webhook and metric."""
        ...

    async def minutes(
        self, webhook_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[MinuteRow]: ...

    async def workspace_minutes(
        self, workspace_id: uuid.UUID, start: datetime
    ) -> list[MinuteCounts]: ...

    async def workspaces(self) -> list[WorkspaceRow]:
        """Configured or counted workspaces, most recently active first."""
        ...

    async def metrics_rows(
        self, limit: int, since: datetime
    ) -> tuple[list[TopRow], RestRow, list[FiringRow]]:
        """(the ``limit`` most recently active webhooks with their sums since ``since``,
        the sum of all other webhooks, every firing alert)."""
        ...

    async def prune(
        self,
        *,
        counted_before: datetime,
        minutes_before: datetime,
        errors_per_webhook: int,
        vendors_before: datetime,
    ) -> dict[str, int]:
        """Drop counted ids and minutes past retention, all but the newest errors, and the
        vendor scorecards' rows before ``vendors_before``."""
        ...

    async def vendor_rows(
        self, workspace_id: uuid.UUID, starts: Mapping[str, datetime]
    ) -> VendorRows:
        """The workspace's webhooks, and per webhook and window (name -> first minute)
        the scorecard's sums and speed-to-lead."""
        ...

    async def sync_deliveries(self, *, since: datetime) -> int:
        """Record on the accepted leads the first email or SMS the notifier sent since
        ``since``; how many leads changed."""
        ...

    async def vendor_metrics(
        self, webhook_ids: Sequence[uuid.UUID], since: datetime
    ) -> tuple[dict[uuid.UUID | None, dict[str, int]], dict[uuid.UUID, dict[str, Any]]]:
        """Since ``since``: the scorecard's sums of each of ``webhook_ids`` and of all
        others (under None), and the speed-to-lead of each of ``webhook_ids``."""
        ...

    async def deadletter_counts(self, webhook_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Dead letters counted per webhook (only webhooks that have some)."""
        ...

    async def workspace_deadletters(self, workspace_id: uuid.UUID) -> int: ...

    async def deadletter_top(
        self, limit: int
    ) -> tuple[list[tuple[uuid.UUID | None, uuid.UUID, int]], int]:
        """The ``limit`` webhooks with the most dead letters ((workspace, webhook, count),
        most first), and the number of all dead letters."""
        ...


class DeadLetterStore(Protocol):
    """The dead-letter consumer's and the growth check's storage
    (:mod:`~services.analytics.deadletter_repository`)."""

    async def record(self, rows: Sequence[DeadLetterRow]) -> int:
        """Count the dead letters not counted before (keyed by the dead-letter message's
        topic, partition and offset); returns how many were new."""
        ...

    async def update_growth(self, since: datetime, decide: DecideGrowth) -> GrowthState | None:
        """Decide the growth alert's next state on the dead letters that failed since
        ``since`` and store it (unpublished), under a lock; None when unchanged."""
        ...

    async def unpublished_growth(self) -> GrowthState | None: ...

    async def mark_growth_published(self, changed_at: datetime) -> None: ...

    async def prune(self, *, before: datetime) -> int: ...
