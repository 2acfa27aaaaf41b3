"""Read models: the API's and the dashboard's figures, composed from repository reads.

Each read-out reads inside one :meth:`~services.analytics.repository.AnalyticsRepository.snapshot`
(Postgres: one REPEATABLE READ transaction), so its figures come from one committed
state: the all-time totals, the last 24 h, the breakdowns and each webhook's figures
agree with each other even while batches are being counted (a batch counted meanwhile is
in none of them, or, read after it, in all).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.analytics.report import Breakdown, Totals, buckets, build_metrics, window_start
from services.analytics.repository import AnalyticsRepository, BreakdownRow, WebhookRow
from services.analytics.schemas import (
    AlertStatus,
    RecentError,
    Timeseries,
    VendorScorecard,
    VendorScorecards,
    WebhookAnalytics,
    WorkspaceAnalytics,
    WorkspaceList,
    WorkspaceListItem,
)
from services.analytics.vendors import WINDOWS, vendor_windows

DAY_MINUTES = 24 * 60
# Longest time series one request may ask for (one week of minutes).
MAX_SERIES_MINUTES = 7 * DAY_MINUTES
# Minutes of history each dashboard chart shows.
DASHBOARD_MINUTES = 60


@dataclass(frozen=True)
class ReadConfig:
    accuracy: float
    recent_errors: int = 10


def _breakdowns(rows: list[BreakdownRow]) -> dict[uuid.UUID, Breakdown]:
    out: dict[uuid.UUID, Breakdown] = defaultdict(Breakdown)
    for r in rows:
        out[r["webhook_id"]].add(r["dimension"], r["name"], int(r["count"]), float(r["sum_ms"]))
    return out


async def _webhooks(
    repo: AnalyticsRepository, rows: list[WebhookRow], *, cfg: ReadConfig, now: datetime
) -> tuple[list[WebhookAnalytics], Totals, Totals, Breakdown]:
    ids = [r["webhook_id"] for r in rows]
    day = await repo.window_totals(ids, window_start(now, DAY_MINUTES))
    parts = _breakdowns(await repo.breakdowns(ids))
    deadletters = await repo.deadletter_counts(ids)
    errors: dict[uuid.UUID, list[RecentError]] = defaultdict(list)
    for e in await repo.recent_errors(ids, cfg.recent_errors):
        errors[e.webhook_id].append(e)
    alerts: dict[uuid.UUID, list[AlertStatus]] = defaultdict(list)
    for a in await repo.alert_states(ids):
        alerts[a["webhook_id"]].append(
            AlertStatus(
                metric=a["metric"],
                firing=a["firing"],
                value=a["value"],
                threshold=a["threshold"],
                changed_at=a["changed_at"],
            )
        )
    out: list[WebhookAnalytics] = []
    all_time, last_day, breakdown = Totals(), Totals(), Breakdown()
    for r in rows:
        w = r["webhook_id"]
        totals = Totals.from_row(r)
        day_totals = Totals.from_row(day.get(w))
        part = parts.get(w, Breakdown())
        all_time, last_day = all_time + totals, last_day + day_totals
        breakdown = breakdown.merge(part)
        out.append(
            WebhookAnalytics(
                webhook_id=w,
                workspace_id=r["workspace_id"],
                name=r["name"],
                last_seen_at=r["last_seen_at"],
                metrics=build_metrics(totals, day_totals, part, accuracy=cfg.accuracy),
                deadletters=deadletters.get(w, 0),
                alerts=alerts.get(w, []),
                recent_errors=errors.get(w, []),
            )
        )
    return out, all_time, last_day, breakdown


async def webhook_analytics(
    repo: AnalyticsRepository, webhook_id: uuid.UUID, *, cfg: ReadConfig, now: datetime
) -> WebhookAnalytics | None:
    async with repo.snapshot() as snap:
        row = await snap.webhook_row(webhook_id)
        if row is None:
            return None
        webhooks, *_ = await _webhooks(snap, [row], cfg=cfg, now=now)
    return webhooks[0]


async def workspace_analytics(
    repo: AnalyticsRepository, workspace_id: uuid.UUID, *, cfg: ReadConfig, now: datetime
) -> WorkspaceAnalytics | None:
    async with repo.snapshot() as snap:
        return await _workspace(snap, workspace_id, cfg=cfg, now=now)


async def _workspace(
    repo: AnalyticsRepository, workspace_id: uuid.UUID, *, cfg: ReadConfig, now: datetime
) -> WorkspaceAnalytics | None:
    known, name = await repo.workspace_name(workspace_id)
    if not known:
        return None
    rows = await repo.workspace_rows(workspace_id)
    webhooks, all_time, last_day, breakdown = await _webhooks(repo, rows, cfg=cfg, now=now)
    webhooks.sort(
        key=lambda w: (
            w.last_seen_at is None,
            -(w.last_seen_at.timestamp() if w.last_seen_at else 0),
        )
    )
    return WorkspaceAnalytics(
        workspace_id=workspace_id,
        name=name,
        metrics=build_metrics(all_time, last_day, breakdown, accuracy=cfg.accuracy),
        deadletters=await repo.workspace_deadletters(workspace_id),
        webhooks=webhooks,
    )


async def workspace_list(repo: AnalyticsRepository) -> WorkspaceList:
    return WorkspaceList(
        workspaces=[
            WorkspaceListItem(
                workspace_id=r["workspace_id"],
                name=r["name"],
                webhooks=r["webhooks"],
                total_requests=r["total"],
                last_seen_at=r["last_seen_at"],
            )
            for r in await repo.workspaces()
        ]
    )


async def timeseries(
    repo: AnalyticsRepository,
    webhook_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    cfg: ReadConfig,
) -> Timeseries:
    start = start.replace(second=0, microsecond=0)
    end = end.replace(second=0, microsecond=0)
    rows = await repo.minutes(webhook_id, start, end)
    return Timeseries.model_validate(
        {
            "webhook_id": webhook_id,
            "from": start,
            "to": end,
            "buckets": buckets(rows, start, end, accuracy=cfg.accuracy),
        }
    )


async def dashboard_snapshot(
    repo: AnalyticsRepository, workspace_id: uuid.UUID, *, cfg: ReadConfig, now: datetime
) -> dict[str, Any] | None:
    """The workspace's figures plus each webhook's last hour per minute (for charts)."""
    start = window_start(now, DASHBOARD_MINUTES)
    async with repo.snapshot() as snap:
        ws = await _workspace(snap, workspace_id, cfg=cfg, now=now)
        if ws is None:
            return None
        minutes = await snap.workspace_minutes(workspace_id, start)
    series: dict[str, dict[str, list[int]]] = {}
    for w in ws.webhooks:
        series[str(w.webhook_id)] = {
            k: [0] * DASHBOARD_MINUTES for k in ("processed", "failed", "rejected")
        }
    for r in minutes:
        s = series.get(str(r["webhook_id"]))
        i = int((r["minute"] - start) / timedelta(minutes=1))
        if s is None or not 0 <= i < DASHBOARD_MINUTES:
            continue
        s["processed"][i] += r["processed"]
        s["failed"][i] += r["failed"]
        s["rejected"][i] += r["rejected"]
    return {
        "generated_at": now.isoformat(),
        "series_start": start.isoformat(),
        "series_minutes": DASHBOARD_MINUTES,
        "workspace": ws.model_dump(mode="json"),
        "series": series,
    }


async def vendor_scorecards(
    repo: AnalyticsRepository, workspace_id: uuid.UUID, *, now: datetime
) -> VendorScorecards | None:
    """Every webhook of the workspace with its figures over 24 h, 7 d and 30 d (most
    received in 30 days first); None for a workspace neither configured nor counted."""
    starts = {name: window_start(now, minutes) for name, minutes in WINDOWS}
    async with repo.snapshot() as snap:
        known, _ = await snap.workspace_name(workspace_id)
        if not known:
            return None
        rows = await snap.vendor_rows(workspace_id, starts)
    cards = [
        VendorScorecard(
            webhook_id=w,
            name=rows.names.get(w),
            windows=vendor_windows(rows.sums.get(w, {}), rows.speeds.get(w, {})),
        )
        for w in {*rows.names, *rows.sums}
    ]
    cards.sort(key=lambda c: (-c.windows.last_30d.received, c.name or "", str(c.webhook_id)))
    return VendorScorecards(workspace_id=workspace_id, generated_at=now, vendors=cards)
