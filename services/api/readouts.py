"""The management API's read-outs of the running pipeline: analytics' figures of a
workspace and of a webhook (through :mod:`services.analytics.admin`), and the dead letters
that name the workspace, listed, shown and sent back once with a dry run first (through
:mod:`services.api.deadletters`, which ``leadwire deadletter`` calls too).

As everywhere in the API, the router has checked that the key sees the path's workspace;
a webhook or dead letter of another workspace answers 404, as one that exists nowhere. A
dead letter belongs to the workspace its entry names; one that names none (garbage bytes
on a topic) is an operator's, through ``leadwire deadletter``.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import ConfigDict, Field, StringConstraints

from services.analytics import admin as analytics
from services.api import admin
from services.api import deadletters as dead
from services.api.handlers import Context, Repository
from services.api.models import Answer, Request
from services.api.pipeline import Text, TimeText, connection
from services.archiver.admin import parse_time

DeadLetterId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=60),
    Field(description="<topic>:<partition>:<offset>, e.g. deadletter:2:15"),
]
Topic = Literal["deadletter", "notifications.deadletter"]

# --- analytics' figures -------------------------------------------------------------


async def workspace_figures(
    workspace_id: uuid.UUID, *, ctx: Context
) -> analytics.WorkspaceAnalytics:
    """The workspace's figures: requests by outcome, rates, times, dead letters, and each
    webhook's"""
    found = await analytics.workspace_figures(
        _pool(ctx), workspace_id, accuracy=ctx.settings.analytics_sketch_accuracy
    )
    if found is None:
        raise admin.NotFound("no such workspace", field="workspace_id")
    return found


async def webhook_figures(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Repository, ctx: Context
) -> analytics.WebhookAnalytics:
    """A webhook's figures: requests by outcome, rates, p50/p95/p99 times, the last 24 h,
    breakdowns, dead letters, alerts and recent errors"""
    await admin.get_webhook(repo, webhook_id, workspace_id)  # the workspace's, or 404
    found = await analytics.webhook_figures(
        _pool(ctx), webhook_id, accuracy=ctx.settings.analytics_sketch_accuracy
    )
    if found is None:
        raise admin.NotFound(f"no webhook with id {webhook_id}", field="webhook_id")
    return found


async def vendor_scorecards(workspace_id: uuid.UUID, *, ctx: Context) -> analytics.VendorScorecards:
    """The workspace's vendor scorecards: each webhook's leads over 24 h, 7 d and 30 d
    (received, accepted, rejected by reason, failed, acceptance and new-contact rates,
    speed-to-lead)"""
    found = await analytics.vendor_scorecards(_pool(ctx), workspace_id)
    if found is None:
        raise admin.NotFound("no such workspace", field="workspace_id")
    return found


def _pool(ctx: Context) -> asyncpg.Pool:
    if ctx.pool is None:
        raise RuntimeError("this operation needs Postgres (Context.pool)")
    return ctx.pool


# --- dead letters -------------------------------------------------------------------


class DeadLetterQuery(Request):
    topic: Topic | None = Field(None, description="one topic; default both")
    since: TimeText = "7d"
    reason: Text | None = Field(None, description="one reason code: permanent, undecodable, ...")


class DeadLetter(Answer):
    """A dead letter as a listing shows it: ids, codes and positions, never the reason's
    text or the message."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    at: datetime
    reason_code: str
    error_class: str | None
    source: str = Field(description="<topic>:<partition>:<offset>, or '<channel> notifications'")
    group_id: str | None
    workspace_id: str | None = None
    webhook_id: str | None = None
    request_id: str | None = None
    sends: int | None = Field(None, description="a notification's: how many sends it holds")
    retried_at: datetime | None


class DeadLetterList(Answer):
    topics: list[str]
    since: datetime
    count: int
    by_reason: dict[str, int]
    retried: int = Field(description="how many were sent back already")
    items: list[DeadLetter]


class DeadLetterDetail(DeadLetter):
    reason: str
    target: str | None = Field(description="where a retry sends it; null: nowhere")
    entry: dict[str, Any]
    payload: Any = Field(description="the message it holds: its JSON, or its bytes in base64")


class RetryRequest(Request):
    ids: list[DeadLetterId] | None = Field(None, max_length=100, description="these ones")
    all: bool = Field(False, description="every one of the window not sent back yet")
    topic: Topic | None = None
    since: TimeText = "7d"
    reason: Text | None = None
    dry_run: bool = Field(True, description="say what would be sent where; change nothing")


class RetryResult(Answer):
    dry_run: bool
    considered: int
    retried: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    summary: dict[str, int] = Field(description="retried, skipped")


def _since(value: str) -> datetime:
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise admin.Invalid(str(exc), field="since") from None


def _db(ctx: Context) -> dead.Database:
    return functools.partial(connection, ctx)


async def list_deadletters(
    workspace_id: uuid.UUID, query: DeadLetterQuery, *, ctx: Context
) -> DeadLetterList:
    """Dead letters naming the workspace (oldest first), counted per reason"""
    names, since = dead.topics_named(query.topic), _since(query.since)
    found = await dead.gather(
        ctx.settings, _db(ctx), names, since=since, reason=query.reason, workspace_id=workspace_id
    )
    doc = dead.listing(found, names=names, since=since)
    return DeadLetterList.model_validate({**doc, "items": doc.pop("deadletters")})


async def _one(ctx: Context, workspace_id: uuid.UUID, deadletter_id: str) -> dead.DeadLetter:
    try:
        return await dead.get(ctx.settings, _db(ctx), deadletter_id, workspace_id=workspace_id)
    except admin.Invalid:  # a malformed id names nothing
        raise admin.NotFound(f"no dead letter {deadletter_id}", field="deadletter_id") from None


async def get_deadletter(
    workspace_id: uuid.UUID, deadletter_id: str, *, ctx: Context
) -> DeadLetterDetail:
    """One dead letter whole: its reason, where a retry sends it, and the message"""
    return DeadLetterDetail.model_validate(dead.show(await _one(ctx, workspace_id, deadletter_id)))


async def retry_deadletters(
    workspace_id: uuid.UUID, body: RetryRequest, *, ctx: Context
) -> RetryResult:
    """Send dead letters back once each, after the cause is fixed: a dry run unless
    ``"dry_run": false``

    A consumer's goes back to its source topic, unchanged; a notification's sends go back
    to the queue. One sent back before is skipped (by the CLI or the API)."""
    if (body.ids is None) == (not body.all):
        raise admin.Invalid("give ids or all: true (one of them)", field="ids")
    if body.ids is not None:
        letters = [await _one(ctx, workspace_id, i) for i in dict.fromkeys(body.ids)]
    else:
        letters = await dead.gather(
            ctx.settings,
            _db(ctx),
            dead.topics_named(body.topic),
            since=_since(body.since),
            reason=body.reason,
            workspace_id=workspace_id,
        )
    result = await dead.retry(ctx.settings, _db(ctx), letters, dry_run=body.dry_run)
    return RetryResult.model_validate(result)
