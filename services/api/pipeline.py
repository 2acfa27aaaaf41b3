"""The management API's handlers over the pipeline's services, through their admin
modules (the ones the CLI uses too): notification rules and the real-time token
(notifier), the archive and replay (archiver), contacts and possible duplicates
(processor). Each reads or changes one workspace's data: the path's, which the router
has checked the key sees; an object of another workspace answers 404.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.api import admin
from services.api.handlers import Context, Repository
from services.api.models import Answer, Request
from services.archiver import admin as archive
from services.notifier import admin as notify
from services.processor import admin as contacts

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Recipient = Annotated[str, StringConstraints(min_length=1, max_length=320)]
TimeText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    Field(description="ISO date/time (UTC if naive), 'now', or an age like 30m, 24h, 7d"),
]
MAX_REPLAY_WINDOW = timedelta(days=31)


@contextlib.asynccontextmanager
async def connection(ctx: Context) -> AsyncIterator[asyncpg.Connection]:
    if ctx.pool is None:
        raise RuntimeError("this operation needs Postgres (Context.pool)")
    async with ctx.pool.acquire() as conn:
        yield conn


async def _region(repo: Repository, workspace_id: uuid.UUID) -> str:
    return str((await admin.get_workspace(repo, workspace_id))["default_region"])


# --- notifications ------------------------------------------------------------------


class NotificationRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event: notify.EventKind
    channel: notify.Channel
    recipients: list[Recipient] = Field(
        default_factory=list,
        max_length=50,
        description="emails (email), phones (sms); none for realtime (the workspace's room)",
    )


class HighPriorityCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Text
    op: Literal["eq", "in"] = "eq"
    value: Text | Annotated[list[Text], Field(min_length=1, max_length=100)]


class HighPriorityRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    conditions: list[HighPriorityCondition] = Field(min_length=1, max_length=20)
    sms_recipients: list[Recipient] = Field(min_length=1, max_length=20)


class TokenState(Answer):
    set: bool


class NotificationSettings(Answer):
    workspace_id: uuid.UUID
    rules: list[NotificationRule]
    high_priority: HighPriorityRule | None
    defaults: bool = Field(description="no rules stored: the defaults apply")
    realtime_token: TokenState
    updated_at: datetime | None


class TokenRequest(Request):
    rotate: bool = Field(False, description="replace the token (the old one stops working)")


class RealtimeToken(Answer):
    workspace_id: uuid.UUID
    token: str = Field(description="shown this once")
    rotated: bool


def _recipient(
    channel: notify.Channel, value: str, region: str, *, field: str = "recipients"
) -> str:
    try:
        if channel is notify.Channel.EMAIL:
            return notify.check_email(value)
        return notify.check_phone(value, region)
    except notify.InvalidRecipient as exc:
        raise admin.Invalid(exc.message, field=field, hint=exc.hint) from None


async def _describe(ctx: Context, workspace_id: uuid.UUID) -> NotificationSettings:
    async with connection(ctx) as conn:
        try:
            doc = await notify.describe(conn, workspace_id)
        except notify.InvalidStoredSettings as exc:
            raise admin.Conflict(str(exc), code="invalid_stored_settings") from None
    return NotificationSettings.model_validate({**doc, "workspace_id": workspace_id})


async def _update(
    ctx: Context, workspace_id: uuid.UUID, change: notify.Change
) -> NotificationSettings:
    async with connection(ctx) as conn:
        try:
            await notify.update(conn, workspace_id, change)
        except notify.InvalidStoredSettings as exc:
            raise admin.Conflict(str(exc), code="invalid_stored_settings") from None
    return await _describe(ctx, workspace_id)


async def get_notifications(workspace_id: uuid.UUID, *, ctx: Context) -> NotificationSettings:
    """The workspace's notification rules, high-priority rule and token state"""
    return await _describe(ctx, workspace_id)


async def set_notification_rule(
    workspace_id: uuid.UUID, body: NotificationRule, *, repo: Repository, ctx: Context
) -> NotificationSettings:
    """Send an event to a channel (replaces the recipients of that event and channel)"""
    region = await _region(repo, workspace_id)
    if body.channel is notify.Channel.REALTIME and body.recipients:
        raise admin.Invalid(
            "a realtime rule has no recipients: it goes to everyone connected to the workspace",
            field="recipients",
        )
    if body.channel is not notify.Channel.REALTIME and not body.recipients:
        raise admin.Invalid(f"an {body.channel.value} rule needs recipients", field="recipients")
    recipients = tuple(dict.fromkeys(_recipient(body.channel, r, region) for r in body.recipients))
    rule = notify.Rule(event=body.event, channel=body.channel, recipients=recipients)
    return await _update(ctx, workspace_id, lambda s: s.with_rule(rule))


async def delete_notification_rule(
    workspace_id: uuid.UUID, event: notify.EventKind, channel: notify.Channel, *, ctx: Context
) -> NotificationSettings:
    """Stop sending an event to a channel"""

    def change(s: notify.NotificationSettings) -> notify.NotificationSettings:
        updated, removed = s.without_rule(event, channel)
        if not removed:
            raise admin.NotFound(f"no {event.value} -> {channel.value} rule", field="event")
        return updated

    return await _update(ctx, workspace_id, change)


async def set_high_priority(
    workspace_id: uuid.UUID, body: HighPriorityRule, *, repo: Repository, ctx: Context
) -> NotificationSettings:
    """Text these phones when a lead matches every condition"""
    region = await _region(repo, workspace_id)
    phones = tuple(
        dict.fromkeys(
            _recipient(notify.Channel.SMS, p, region, field="sms_recipients")
            for p in body.sms_recipients
        )
    )
    rule = notify.HighPriority.model_validate(
        {"conditions": [c.model_dump() for c in body.conditions], "sms_recipients": phones}
    )
    return await _update(ctx, workspace_id, lambda s: s.model_copy(update={"high_priority": rule}))


async def clear_high_priority(workspace_id: uuid.UUID, *, ctx: Context) -> NotificationSettings:
    """Remove the high-priority rule"""
    return await _update(ctx, workspace_id, lambda s: s.model_copy(update={"high_priority": None}))


async def issue_realtime_token(
    workspace_id: uuid.UUID, body: TokenRequest, *, ctx: Context
) -> RealtimeToken:
    """Create (or with rotate, replace) the workspace's Socket.IO token; shown once"""
    async with connection(ctx) as conn:
        try:
            token, rotated = await notify.issue_token(conn, workspace_id, rotate=body.rotate)
        except notify.TokenExists:
            raise admin.Conflict(
                "the workspace has a real-time token (it is shown only once)",
                code="token_exists",
                hint="ask again with rotate: true for a new one",
            ) from None
    return RealtimeToken(workspace_id=workspace_id, token=token, rotated=rotated)


# --- the archive and replay ---------------------------------------------------------


class ArchiveQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_id: uuid.UUID | None = None
    status: Literal[archive.STATUSES] | None = None  # type: ignore[valid-type]
    error_type: Text | None = None
    match_type: Literal[archive.MATCH_TYPES] | None = None  # type: ignore[valid-type]
    since: TimeText = "24h"
    until: TimeText = "now"
    limit: int = Field(100, ge=1, le=1000)
    cursor: Annotated[str, StringConstraints(max_length=500)] | None = None


class ArchivedRequest(Answer):
    request_id: uuid.UUID
    received_at: datetime
    status: str
    match_type: str | None
    error_type: str | None
    replay_of: uuid.UUID | None
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID


class ArchivePage(Answer):
    count: int
    requests: list[ArchivedRequest]
    next_cursor: str | None = Field(description="pass as cursor for the next page")


class ArchivedRecord(Answer):
    """The archived log record of one request (its fields as the archiver wrote them)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    request_id: uuid.UUID
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    status: str


class ReplayRequest(Request):
    since: TimeText
    until: TimeText = "now"
    status: Literal[archive.STATUSES] | None = None  # type: ignore[valid-type]
    dry_run: bool = Field(True, description="show what each would become; publish nothing")


class ReplayResult(Answer):
    dry_run: bool
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    since: datetime
    until: datetime
    status: str | None
    mapping_fingerprint: str
    summary: dict[str, int] = Field(description="found, replayed, rejected, skipped")
    requests: list[dict[str, Any]]


def _time(value: str, field: str) -> datetime:
    try:
        moment = archive.parse_time(value)
        moment.astimezone(UTC) + timedelta(days=1)  # within datetime's range, with room
    except (ValueError, OverflowError) as exc:
        raise admin.Invalid(str(exc), field=field) from None
    return moment


def _window(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = _time(since, "since"), _time(until, "until")
    if start >= end:
        raise admin.Invalid("since must be before until", field="since")
    return start, end


def _unavailable(exc: archive.AdminError) -> admin.AdminError:
    """The archive's own refusals (S3 or Postgres away) are a 503 to the caller."""
    return admin.AdminError(exc.message, code="archive_unavailable", hint=exc.hint).with_status(503)


async def search_archive(
    workspace_id: uuid.UUID, query: ArchiveQuery, *, ctx: Context
) -> ArchivePage:
    """Archived requests of the workspace (one webhook, status, error or match type), oldest first"""
    since, until = _window(query.since, query.until)
    wanted = archive.Query(
        workspace_id=workspace_id,
        webhook_id=query.webhook_id,
        status=query.status,
        error_type=query.error_type,
        match_type=query.match_type,
        since=since,
        until=until,
    )
    try:
        page = await archive.search_requests(
            ctx.settings, wanted, limit=query.limit, cursor=query.cursor
        )
    except archive.AdminError as exc:
        if exc.message.startswith("--cursor"):  # the archive's word for a bad cursor
            raise admin.Invalid(exc.message.removeprefix("--"), field="cursor") from None
        raise _unavailable(exc) from None
    return ArchivePage.model_validate(page)


async def get_archived(
    workspace_id: uuid.UUID, request_id: uuid.UUID, *, ctx: Context
) -> ArchivedRecord:
    """The archived log record of one request"""
    try:
        record = await archive.show_record(ctx.settings, request_id)
    except archive.AdminError as exc:
        if "not in the archive" in exc.message:
            raise admin.NotFound(exc.message, field="request_id") from None
        raise _unavailable(exc) from None
    if str(record.get("workspace_id")) != str(workspace_id):
        raise admin.NotFound(f"request {request_id} is not in the archive", field="request_id")
    return ArchivedRecord.model_validate(record)


async def replay(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: ReplayRequest,
    *,
    repo: Repository,
    ctx: Context,
) -> ReplayResult:
    """Re-submit a webhook's archived requests with its current mapping (dry run first)

    With dry_run (the default) nothing is published: the answer says what each request
    would become. Each replayed request is a new request linked to its original; the same
    request replayed again with the same mapping creates nothing new."""
    since, until = _window(body.since, body.until)
    if until - since > MAX_REPLAY_WINDOW:
        raise admin.Invalid("a replay window is at most 31 days", field="since")
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    if "disabled" in (row["status"], row["workspace_status"]) and not body.dry_run:
        raise admin.Conflict(
            "the webhook or its workspace is disabled: the pipeline would refuse the replay",
            code="disabled",
        )
    limit = ctx.settings.api_replay_max_requests
    query = archive.Query(
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        status=body.status,
        since=since,
        until=until,
    )
    try:
        page = await archive.search_requests(ctx.settings, query, limit=limit, cursor=None)
        if page["next_cursor"] is not None:
            raise admin.Invalid(
                f"more than {limit} archived requests in that window: narrow it", field="since"
            )
        config = archive.WebhookConfig(
            id=row["id"],
            workspace_id=row["workspace_id"],
            name=row["name"],
            workspace_name=row["workspace"],
            status=row["status"],
            workspace_status=row["workspace_status"],
            mapping=row["mapping"],
            default_region=row["default_region"],
        )
        result = await archive.replay_requests(
            ctx.settings, config, since=since, until=until, status=body.status, dry_run=body.dry_run
        )
    except archive.AdminError as exc:
        raise _unavailable(exc) from None
    return ReplayResult.model_validate(result)


# --- contacts -----------------------------------------------------------------------


class DuplicatesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(100, ge=1, le=1000)


class Contact(Answer):
    """A contact: its keys and fields, board, latest leads and possible duplicates."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: uuid.UUID
    workspace_id: uuid.UUID


class DuplicateList(Answer):
    items: list[dict[str, Any]]


async def get_contact(workspace_id: uuid.UUID, contact_id: uuid.UUID, *, ctx: Context) -> Contact:
    """One contact, its latest leads and its possible duplicates"""
    async with connection(ctx) as conn:
        found = await contacts.contact(conn, contact_id)
    if found is None or found["workspace_id"] != workspace_id:
        raise admin.NotFound(f"no contact {contact_id}", field="contact_id")
    return Contact.model_validate(found)


async def list_duplicates(
    workspace_id: uuid.UUID, query: DuplicatesQuery, *, ctx: Context
) -> DuplicateList:
    """Pairs of contacts that share a CRM id, phone or email (newest first)"""
    async with connection(ctx) as conn:
        pairs = await contacts.possible_duplicates(conn, workspace_id, limit=query.limit)
    return DuplicateList(items=pairs)
