"""What other front-ends read of analytics, and the one module of analytics they import:
a webhook's and a workspace's figures (requests by outcome, rates, times and percentiles,
the last 24 hours, breakdowns, dead letters, alerts, recent errors), read from analytics'
tables through its repository, the same read-outs as analytics' own API
(``/analytics/webhooks/{id}``, ``/analytics/workspaces/{id}``), and a workspace's vendor
scorecards (``/analytics/workspaces/{id}/vendors``). Each is read in one snapshot.

Who may read which workspace is the caller's to decide (the management API answers 404
for another workspace's ids before it calls these). ``accuracy`` must be the one analytics
counts with (``LEADWIRE_ANALYTICS_SKETCH_ACCURACY``): percentiles are read from its
sketches.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from services.analytics import queries
from services.analytics.postgres_repository import PostgresAnalytics
from services.analytics.queries import ReadConfig
from services.analytics.schemas import VendorScorecards, WebhookAnalytics, WorkspaceAnalytics

__all__ = [
    "DEFAULT_ACCURACY",
    "VendorScorecards",
    "WebhookAnalytics",
    "WorkspaceAnalytics",
    "vendor_scorecards",
    "webhook_figures",
    "workspace_figures",
]

DEFAULT_ACCURACY = 0.01
RECENT_ERRORS = 10


def _config(accuracy: float) -> ReadConfig:
    return ReadConfig(accuracy=accuracy, recent_errors=RECENT_ERRORS)


async def webhook_figures(
    pool: asyncpg.Pool,
    webhook_id: uuid.UUID,
    *,
    accuracy: float = DEFAULT_ACCURACY,
    now: datetime | None = None,
) -> WebhookAnalytics | None:
    """A webhook's figures; None when it is neither configured nor counted."""
    return await queries.webhook_analytics(
        PostgresAnalytics(pool), webhook_id, cfg=_config(accuracy), now=now or datetime.now(UTC)
    )


async def workspace_figures(
    pool: asyncpg.Pool,
    workspace_id: uuid.UUID,
    *,
    accuracy: float = DEFAULT_ACCURACY,
    now: datetime | None = None,
) -> WorkspaceAnalytics | None:
    """A workspace's figures and each of its webhooks'; None when it is neither
    configured nor counted."""
    return await queries.workspace_analytics(
        PostgresAnalytics(pool), workspace_id, cfg=_config(accuracy), now=now or datetime.now(UTC)
    )


async def vendor_scorecards(
    pool: asyncpg.Pool, workspace_id: uuid.UUID, *, now: datetime | None = None
) -> VendorScorecards | None:
    """Each webhook's scorecard over 24 h, 7 d and 30 d; None when the workspace is neither
    configured nor counted."""
    return await queries.vendor_scorecards(
        PostgresAnalytics(pool), workspace_id, now=now or datetime.now(UTC)
    )
