"""What the gateway answers: one pydantic model per response body.

The handlers build these and :func:`services.ingest.responses.json_response` writes them;
the OpenAPI document (:mod:`services.ingest.openapi`) is generated from the same models,
so the document cannot drift from the answers.

Serialized with ``exclude_unset``: a field is in the body when the code gave it a value
(``None`` included, written as ``null``). Fields that may be left out are typed
``X | SkipJsonSchema[None] = omitted()``: optional in the schema, never ``null`` on the wire.
Field order is the order of the bytes on the wire.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from shared.events import ErrorInfo, FieldError

#: What ``webhook_requests.status`` holds, and ``accepted`` for a request only this
#: process knows of yet.
RequestState = Literal["accepted", "processed", "failed", "rejected", "duplicate"]
MatchType = Literal["crm_id", "phone", "email", "new"]
# Timestamps are written as Python's isoformat() gives them (``+00:00``, not ``Z``).
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omitted() -> Any:
    """A field left out of the body unless given (never written as ``null``)."""
    return Field(default=None, json_schema_extra=_no_default)


class Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class Accepted(Body):
    """202: Kafka holds the lead (acks=all); the processor takes it from there."""

    success: Literal[True]
    request_id: uuid.UUID
    webhook_id: uuid.UUID
    status: Literal["accepted"]
    status_url: str


class Duplicate(Body):
    """A retry of a request already accepted (same idempotency key and body): the first
    request's id; 200 once it is stored as finished, 202 while only accepted."""

    success: Literal[True]
    request_id: uuid.UUID
    webhook_id: uuid.UUID
    status: Literal["duplicate"]
    original_status: RequestState
    status_url: str


class Processed(Body):
    """200 after ``Prefer: wait``: the lead was processed (or a retry of one that was)."""

    success: Literal[True]
    message: str
    contact_id: str | None
    webhook_id: uuid.UUID
    rule_applied: bool
    match_type: MatchType | None
    is_new_contact: bool
    processing_time: str | None = Field(examples=["12ms"])
    request_id: uuid.UUID
    status: Literal["processed", "duplicate"]


class Failed(Body):
    """422 after ``Prefer: wait``: the lead was accepted but processing failed."""

    success: Literal[False]
    request_id: uuid.UUID
    webhook_id: uuid.UUID
    status: RequestState
    original_status: RequestState
    error: ErrorInfo
    errors: list[FieldError] | SkipJsonSchema[None] = omitted()


class Rejected(Body):
    """400 or 409 about the lead itself: recorded (an outcome event and a status row)
    under ``request_id``."""

    success: Literal[False]
    request_id: uuid.UUID
    webhook_id: uuid.UUID
    status: Literal["rejected"]
    errors: list[FieldError]


class Error(Body):
    """A refusal that is not about a lead (401, 404, 408, 410, 413, 415, 429, 431, 503 ...):
    counted in metrics, not recorded."""

    success: Literal[False]
    errors: list[FieldError]
    status: Literal["unknown"] | SkipJsonSchema[None] = omitted()


# --- GET /webhooks/{webhook_id}/requests/{request_id} ---------------------------------


class ProcessedSummary(Body):
    contact_id: str | None
    lead_id: str | None
    action: Literal["created", "updated"] | None
    match_type: MatchType | None
    is_new_contact: bool
    rule_applied: bool
    board_id: str | None
    processing_time: str | None
    message: str


class RejectedSummary(Body):
    status_code: int | None
    reason: str | None
    errors: list[FieldError]


class ErrorSummary(Body):
    type: str | None
    message: str | None


class FailedSummary(Body):
    """A failed request's error; empty when none was stored."""

    error: ErrorSummary | SkipJsonSchema[None] = omitted()


class RequestStatus(Body):
    """A request's state; ``result`` is a summary (ids, codes, timings), never personal data."""

    request_id: uuid.UUID
    webhook_id: uuid.UUID
    status: RequestState
    received_at: Timestamp | None
    processed_at: Timestamp | None
    result: ProcessedSummary | RejectedSummary | FailedSummary | None


#: Every body, in the order the OpenAPI document lists them.
BODIES: tuple[type[Body], ...] = (
    Accepted,
    Duplicate,
    Processed,
    Failed,
    Rejected,
    Error,
    RequestStatus,
)
