"""Versioned event schemas: one discriminated union per topic.

Events are past-tense facts, frozen once made. Consumers ignore fields they do not know
(``extra="ignore"``), so a producer may add optional fields without a version bump; a
breaking change bumps ``schema_version`` and the consumers learn both shapes first.

Identity, which is what makes every consumer idempotent:

- ``LeadReceived.request_id`` is the gateway's request id. A vendor retry carrying the same
  idempotency key gets the *same* request id (:func:`request_id_for`), so it can never make
  a second lead.
- Every outcome's ``event_id`` is derived from its request id (:func:`outcome_event_id`):
  a re-published or replayed outcome carries the same id, so consumers dedupe on it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION: Literal[1] = 1
# The versions this build reads; an event of any other version is refused at decoding
# (UnknownVersion), so a consumer dead-letters it instead of misreading it.
Version = Literal[1]

# Namespace for ids derived from other ids (uuid5). Never change it: ids are stored.
_NAMESPACE = uuid.UUID("8f0c5a0e-2b7e-4f55-9d2b-6c1b3e5e7a10")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_request_id() -> uuid.UUID:
    return uuid.uuid4()


def request_id_for(webhook_id: uuid.UUID, idempotency_key: str | None) -> uuid.UUID:
    """A random id, or for a keyed request the same id every time the key comes back."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_NAMESPACE, f"request:{webhook_id}:{idempotency_key}")


def outcome_event_id(request_id: uuid.UUID) -> uuid.UUID:
    """The one outcome event id a request ever gets, however often it is published."""
    return uuid.uuid5(_NAMESPACE, f"outcome:{request_id}")


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- shared parts -------------------------------------------------------------------


class Consent(Event):
    """The consent evidence a lead came with (``shared.mapping.consent`` validates it)."""

    trustedform_cert_url: str | None = None
    leadid_token: str | None = None
    tcpa_consent: bool | None = None
    tcpa_consent_text: str | None = None
    tcpa_consent_at: datetime | None = None


class MappedLead(Event):
    """A lead after field mapping and normalization (phones E.164, emails lowercased)."""

    crm_id: str | None = None
    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    product: str | None = None
    lead_status: str | None = None
    # Unmapped fields and mapped fields without a contact column; never dropped.
    custom: dict[str, Any] = Field(default_factory=dict)
    # Consent evidence, when the vendor sent any (stored with the lead: leads.consent).
    consent: Consent | None = None

    def field(self, name: str) -> Any:
        """A mapped field by name, falling back to custom fields (for rules)."""
        if name in type(self).model_fields and name != "custom":
            return getattr(self, name)
        return self.custom.get(name)


class RawRequest(Event):
    """What the vendor sent, with secrets and signatures already removed."""

    method: str = "POST"
    path: str
    headers: dict[str, str]
    content_type: str
    payload: Any


class FieldError(Event):
    field: str
    code: str
    message: str


class Processing(Event):
    """Timings of one request: when it started and ended, and milliseconds per step."""

    start: datetime
    end: datetime
    duration_ms: float
    steps: dict[str, float] = Field(default_factory=dict)


class ErrorInfo(Event):
    type: str
    message: str


class ContactSummary(Event):
    id: uuid.UUID
    crm_id: str | None = None
    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    product: str | None = None
    lead_status: str | None = None
    board_id: uuid.UUID | None = None
    board_name: str | None = None


# --- raw topic ----------------------------------------------------------------------


class LeadReceived(Event):
    """The gateway accepted a webhook request; Kafka has it (acks=all)."""

    type: Literal["lead.received"] = "lead.received"
    schema_version: Version = SCHEMA_VERSION
    request_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    received_at: datetime
    idempotency_key: str | None = None
    # sha256 of the raw body: the same idempotency key with another body is a conflict.
    body_sha256: str
    request: RawRequest
    lead: MappedLead
    # Gateway steps in ms (receive, authentication, field_mapping, validation); the
    # processor adds its own (contact_processing, board_assignment, lead_creation: this
    # lead's time, a batched statement's divided among its leads) to the stored result.
    steps: dict[str, float] = Field(default_factory=dict)
    # Set when this request re-submits an archived one (``leadwire replay``).
    replay_of: uuid.UUID | None = None
    source: str = "webhook"
    # A client waits for this request's outcome (``Prefer: wait``): the processor wakes the
    # gateway (``leadwire_request_done``) for these requests only, not for every lead.
    awaited: bool = False

    @property
    def event_id(self) -> uuid.UUID:
        return self.request_id


RawEvent = Annotated[LeadReceived, Field(discriminator="type")]


# --- outcome topic ------------------------------------------------------------------


class _Outcome(Event):
    schema_version: Version = SCHEMA_VERSION
    event_id: uuid.UUID
    request_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    occurred_at: datetime
    received_at: datetime
    request: RawRequest
    processing: Processing
    replay_of: uuid.UUID | None = None


class LeadProcessed(_Outcome):
    """The lead is in Postgres: contact created or updated, lead recorded, board set."""

    type: Literal["lead.processed"] = "lead.processed"
    status: Literal["processed"] = "processed"
    lead: MappedLead
    lead_id: uuid.UUID
    contact: ContactSummary
    action: Literal["created", "updated"]
    match_type: Literal["crm_id", "phone", "email", "new"]
    is_new_contact: bool
    rule_applied: bool
    # Other contacts holding one of this lead's identity keys (a possible duplicate pair).
    possible_duplicates: list[uuid.UUID] = Field(default_factory=list)
    # What a person should know about the lead: FLAG_SUPPRESSED when its phone or email
    # is on the workspace's suppression list in flag mode (it is never sent an SMS).
    flags: list[str] = Field(default_factory=list)


class LeadFailed(_Outcome):
    """The request was accepted but could not be processed (e.g. a poison message)."""

    type: Literal["lead.failed"] = "lead.failed"
    status: Literal["failed"] = "failed"
    lead: MappedLead | None = None
    error: ErrorInfo


#: A processed lead whose phone or email is suppressed (the workspace flags them).
FLAG_SUPPRESSED = "suppressed"
#: The processor's own rejection reasons (``LeadRejected.reason``): a lead the same webhook
#: already sent inside its duplicate-lead window, and a lead on the suppression list.
REASON_DUPLICATE_LEAD = "duplicate_lead"
REASON_SUPPRESSED = "suppressed"


class LeadRejected(_Outcome):
    """The request was refused: by the gateway (validation, ...) or by the processor
    (an idempotency conflict, :data:`REASON_DUPLICATE_LEAD`, :data:`REASON_SUPPRESSED`)."""

    type: Literal["lead.rejected"] = "lead.rejected"
    status: Literal["rejected"] = "rejected"
    status_code: int
    reason: str
    errors: list[FieldError] = Field(default_factory=list)


Outcome = Annotated[LeadProcessed | LeadFailed | LeadRejected, Field(discriminator="type")]


# --- alerts topic -------------------------------------------------------------------


class PerformanceAlert(Event):
    """A webhook's error rate or p95 time crossed its threshold (or came back under it)."""

    type: Literal["alert.performance"] = "alert.performance"
    schema_version: Version = SCHEMA_VERSION
    event_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    metric: Literal["error_rate", "p95_processing_time"]
    value: float
    threshold: float
    state: Literal["firing", "resolved"]
    occurred_at: datetime


class SystemHealthAlert(Event):
    """A part of the system stopped doing its work for longer than a bound (or recovered):
    a consumer stuck or not ready, dead letters piling up, the archive falling behind.

    It concerns the system, not one workspace: the notifier delivers it to every
    workspace with a ``system_health`` rule. ``detail`` names the check's figures (topic,
    partition, offset, error class, counts) and never message content. One event per
    crossing: ``event_id`` is :func:`health_event_id` of the crossing, so a re-publish of
    the same crossing carries the same id and the notifier sends it once.
    """

    type: Literal["alert.system_health"] = "alert.system_health"
    schema_version: Version = SCHEMA_VERSION
    event_id: uuid.UUID
    service: str
    check: str
    state: Literal["firing", "resolved"]
    detail: str = ""
    # Which process saw it (host:pid): each replica reports for itself.
    instance: str | None = None
    # When the check started failing: the same in a crossing's firing and resolved events.
    since: datetime
    occurred_at: datetime


def health_event_id(service: str, check: str, since: datetime, state: str) -> uuid.UUID:
    """The one event id of a health crossing: the service, the check, when the crossing
    started (UTC, to the millisecond) and the state."""
    stamp = since.astimezone(UTC).isoformat(timespec="milliseconds")
    return uuid.uuid5(_NAMESPACE, f"health:{service}:{check}:{stamp}:{state}")


Alert = Annotated[PerformanceAlert | SystemHealthAlert, Field(discriminator="type")]


# --- encoding -----------------------------------------------------------------------

_raw_adapter: TypeAdapter[LeadReceived] = TypeAdapter(RawEvent)
_outcome_adapter: TypeAdapter[LeadProcessed | LeadFailed | LeadRejected] = TypeAdapter(Outcome)
_alert_adapter: TypeAdapter[PerformanceAlert | SystemHealthAlert] = TypeAdapter(Alert)


def encode(event: BaseModel) -> bytes:
    # (model_dump_json's bytes, without decoding them to a str and encoding that again)
    return event.__pydantic_serializer__.to_json(event)


def _uuid_text(value: object) -> str:
    """A UUID of a subclass (asyncpg hands a webhook's ids over as its own ``UUID``), which
    orjson leaves to this: its text, as the model writes it; anything else is refused."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError


def lead_received_json(
    *,
    request_id: uuid.UUID,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    received_at: datetime,
    idempotency_key: str | None,
    body_sha256: str,
    request: dict[str, Any],
    lead: MappedLead,
    steps: dict[str, float],
    awaited: bool,
) -> bytes:
    """The bytes ``encode(LeadReceived(...))`` gives for these fields (``request`` as
    :class:`RawRequest`'s fields), without building and validating the model: the
    gateway's hot path, where every field is already of its type (about half the CPU of
    the model's way, measured with cold caches, as the gateway runs). The same bytes, field
    for field (tests/unit/test_shared_events.py holds them equal, for any payload);
    anything orjson does not write (a value outside JSON's types) goes the model's way."""
    lead_fields = vars(lead)
    consent = lead_fields["consent"]
    fields: dict[str, Any] = {
        "type": "lead.received",
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "workspace_id": workspace_id,
        "webhook_id": webhook_id,
        "received_at": received_at,
        "idempotency_key": idempotency_key,
        "body_sha256": body_sha256,
        "request": {"method": "POST", **request},
        # A model's __dict__ holds its fields in order: what its serializer writes
        # (orjson's encoding of those values is pydantic's, byte for byte).
        "lead": lead_fields if consent is None else {**lead_fields, "consent": vars(consent)},
        "steps": steps,
        "replay_of": None,
        "source": "webhook",
        "awaited": awaited,
    }
    try:
        return orjson.dumps(fields, default=_uuid_text, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        fields.update(request=RawRequest(**fields["request"]), lead=lead)
        return encode(LeadReceived(**fields))


T = TypeVar("T")


class UnknownVersion(ValueError):
    """A well-formed event of a schema version this build does not read."""


def decode_with(adapter: TypeAdapter[T], data: bytes) -> T:
    """Validate ``data`` with ``adapter``; an event whose ``schema_version`` this build
    does not read raises :class:`UnknownVersion` (whatever else is wrong with it)."""
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        try:
            version = orjson.loads(data).get("schema_version", SCHEMA_VERSION)
        except (orjson.JSONDecodeError, AttributeError):
            raise exc from None
        if version != SCHEMA_VERSION:
            raise UnknownVersion(
                f"schema_version {str(version)[:20]!r} is not one this build reads "
                f"({SCHEMA_VERSION})"
            ) from exc
        raise


def decode_raw(data: bytes) -> LeadReceived:
    return decode_with(_raw_adapter, data)


def decode_outcome(data: bytes) -> LeadProcessed | LeadFailed | LeadRejected:
    return decode_with(_outcome_adapter, data)


def decode_alert(data: bytes) -> PerformanceAlert | SystemHealthAlert:
    return decode_with(_alert_adapter, data)
