"""The API's bodies: the query it reads and the responses it answers (the source of its
OpenAPI document, see :mod:`services.analytics.openapi`).

Rates are percentages (0-100) and times milliseconds, rounded to 2 decimals; a rate or
time over no requests is null. ``p50/p95/p99`` come from DDSketch and are within the
stated ``percentile_relative_accuracy`` of the true value.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

# Times far enough from datetime's limits that a range around them cannot overflow.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Last24h(_Out):
    requests: int
    successful_requests: int
    failed_requests: int
    rejected_requests: int
    success_rate: float | None
    avg_processing_time: float | None


class Metrics(_Out):
    total_requests: int
    successful_requests: int
    failed_requests: int
    rejected_requests: int
    success_rate: float | None = Field(description="processed / total, percent")
    error_rate: float | None = Field(description="(failed + rejected) / total, percent")
    average_processing_time: float | None = Field(description="ms, exact mean")
    p50_processing_time: float | None = Field(description="ms, DDSketch")
    p95_processing_time: float | None
    p99_processing_time: float | None
    percentile_relative_accuracy: float
    last_24h: Last24h
    by_error_type: dict[str, int] = Field(description="failed: error.type; rejected: reason")
    by_match_type: dict[str, int]
    step_averages: dict[str, float] = Field(description="average ms per processing step")


class RecentError(_Out):
    event_id: uuid.UUID
    request_id: uuid.UUID
    webhook_id: uuid.UUID
    occurred_at: datetime
    status: str
    error_type: str
    message: str


class AlertStatus(_Out):
    metric: str
    firing: bool
    value: float | None
    threshold: float | None
    changed_at: datetime


class WebhookAnalytics(_Out):
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID | None
    name: str | None
    last_seen_at: datetime | None
    metrics: Metrics
    deadletters: int = Field(
        default=0,
        description="this webhook's messages that a consumer gave up on and dead-lettered "
        "(each consumer's dead letter counts; within the dedupe horizon); see "
        "`leadwire deadletter list`",
    )
    alerts: list[AlertStatus] = Field(default_factory=list)
    recent_errors: list[RecentError] = Field(default_factory=list)


class WorkspaceAnalytics(_Out):
    workspace_id: uuid.UUID
    name: str | None
    metrics: Metrics
    deadletters: int = Field(
        default=0, description="dead letters of the workspace's messages (as per webhook)"
    )
    webhooks: list[WebhookAnalytics]


class WorkspaceListItem(_Out):
    workspace_id: uuid.UUID
    name: str | None
    webhooks: int
    total_requests: int
    last_seen_at: datetime | None


class WorkspaceList(_Out):
    workspaces: list[WorkspaceListItem]


class Bucket(_Out):
    minute: datetime
    requests: int
    successful_requests: int
    failed_requests: int
    rejected_requests: int
    success_rate: float | None
    avg_processing_time: float | None
    p95_processing_time: float | None


class Timeseries(_Out):
    webhook_id: uuid.UUID
    from_: datetime = Field(alias="from")
    to: datetime
    interval: str = "1m"
    buckets: list[Bucket]

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class RejectedByReason(_Out):
    validation: int = Field(description="the gateway could not use the request as sent")
    not_accepted: int = Field(description="refused by the webhook's acceptance criteria")
    duplicate_lead: int = Field(description="the same lead inside the duplicate-lead window")
    suppressed: int = Field(description="its phone or email is on the do-not-contact list")
    other: int = Field(description="any other reason (e.g. an idempotency conflict)")


class SpeedToLead(_Out):
    notified: int = Field(
        description="accepted leads of the window with an email or SMS notification sent"
    )
    p50_seconds: float | None = Field(description="received -> first email or SMS sent, exact")
    p95_seconds: float | None


class VendorWindow(_Out):
    received: int = Field(description="accepted + failed + rejected")
    accepted: int = Field(description="processed: recorded as a lead")
    failed: int = Field(description="accepted by the gateway, could not be processed")
    rejected: int = Field(description="the sum of rejected_by_reason")
    rejected_by_reason: RejectedByReason
    new_contacts: int = Field(description="accepted leads that created a contact")
    acceptance_rate: float | None = Field(description="accepted / received, percent")
    new_contact_rate: float | None = Field(description="new_contacts / accepted, percent")
    speed_to_lead: SpeedToLead


class VendorWindows(_Out):
    last_24h: VendorWindow
    last_7d: VendorWindow
    last_30d: VendorWindow


class VendorScorecard(_Out):
    webhook_id: uuid.UUID
    name: str | None
    windows: VendorWindows


class VendorScorecards(_Out):
    workspace_id: uuid.UUID
    generated_at: datetime
    vendors: list[VendorScorecard] = Field(
        description="every webhook of the workspace, most received in 30 days first"
    )


class Problem(_Out):
    error: str
    detail: str | None = None


def _query_time(value: object) -> object:
    """ISO 8601 as it arrives in a query string: ``Z`` for UTC, a ``+`` decoded as a space;
    without a zone it is UTC."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError("date_time", "expected an ISO 8601 date-time") from None
    if not _EARLIEST <= parsed < _LATEST:
        raise PydanticCustomError("date_time", "expected a date-time from 1970 to 8999")
    return parsed


QueryTime = Annotated[
    datetime | None,
    BeforeValidator(_query_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class SeriesRange(BaseModel):
    """The query of a time series request."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: QueryTime = Field(
        default=None, alias="from", description="ISO 8601 start (default: 60 minutes before `to`)"
    )
    to: QueryTime = Field(
        default=None,
        description="ISO 8601 end, inclusive (default: now); at most 7 days after `from`",
    )
