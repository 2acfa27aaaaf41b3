"""Synthetic events for tests: one builder per event type, and publishing them.

- :func:`received`: a ``LeadReceived`` as the gateway makes it (the processor's input);
- :func:`processed`, :func:`failed`, :func:`rejected`: the outcomes every consumer reads;
- :func:`alert`: a ``PerformanceAlert``; :func:`health_alert`: a ``SystemHealthAlert``;
- :func:`mixed_outcomes`, :func:`as_messages`, :func:`publish_events`.

Every keyword a builder takes is a field a test may rely on; a test that asserts on a
value passes it rather than leaning on a default. The defaults are plausible: a lead for
Benjie Malinao, a request from a vendor with safe headers only. ``canaries=True`` adds
secret-bearing headers a careless producer might leave on an event (the archiver must drop
them; :data:`CANARY_VALUES` are searched for in what it stores).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack

import orjson

from shared import topics
from shared.events import (
    ContactSummary,
    ErrorInfo,
    FieldError,
    LeadFailed,
    LeadProcessed,
    LeadReceived,
    LeadRejected,
    MappedLead,
    PerformanceAlert,
    Processing,
    RawRequest,
    SystemHealthAlert,
    encode,
    health_event_id,
    outcome_event_id,
    request_id_for,
)
from shared.kafka import Message, Publisher, ensure_topics
from shared.settings import CommonSettings

Outcome = LeadProcessed | LeadFailed | LeadRejected
Event = LeadReceived | Outcome | PerformanceAlert | SystemHealthAlert
MatchType = Literal["crm_id", "phone", "email", "new"]

CANARY_HEADERS = {
    "Authorization": "Bearer canary-authz-7f3a91",
    "webhook-signature": "v1,canary-sig-c0ffee",
    "X-Hub-Signature-256": "sha256=canary-hub-5ea1ed",
    "X-API-Key": "canary-apikey-b16b00",
    "X-Custom-Token": "canary-token-d00d",
    "Cookie": "session=canary-cookie-ab12",
    "X-Vendor-Secret": "canary-secret-feed",
}
CANARY_VALUES = tuple(value.split("canary-", 1)[1] for value in CANARY_HEADERS.values())
SAFE_HEADERS = {"Content-Type": "application/json", "User-Agent": "vendor-sender/1.0"}

# Gateway steps of an accepted request, and of one the gateway refused.
STEPS = {"authentication": 1.0, "field_mapping": 2.0, "duplicate_check": 4.0}
REJECTED_STEPS = {"authentication": 1.0, "validation": 2.0}


# --- the raw topic ----------------------------------------------------------------------


def received(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    idempotency_key: str | None = None,
    body: dict[str, Any] | None = None,
    request_id: uuid.UUID | None = None,
    crm_id: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = "Ann",
    last_name: str | None = "Lee",
    product: str | None = "Bath Remodel",
    lead_status: str | None = "new",
    custom: dict[str, Any] | None = None,
    received_at: datetime | None = None,
    replay_of: uuid.UUID | None = None,
) -> LeadReceived:
    """A LeadReceived: the vendor's body, the mapped lead, the gateway's steps. No identity
    (crm id, phone, email) unless given: the processor's tests choose every one."""
    payload = (
        body
        if body is not None
        else {
            "firstname": first_name,
            "lastname": last_name,
            "phone_number": phone,
            "email": email,
            "external_crm_id": crm_id,
            "product": product,
            "lead_status": lead_status,
            **(custom or {}),
        }
    )
    rid = request_id or request_id_for(webhook_id, idempotency_key)
    headers = {"content-type": "application/json", "user-agent": "LeadConduit/1.0"}
    if idempotency_key is not None:
        headers["webhook-id"] = idempotency_key
    return LeadReceived(
        request_id=rid,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at or datetime.now(UTC),
        idempotency_key=idempotency_key,
        body_sha256=hashlib.sha256(orjson.dumps(payload)).hexdigest(),
        request=RawRequest(
            path=f"/webhooks/{webhook_id}",
            headers=headers,
            content_type="application/json",
            payload=payload,
        ),
        lead=MappedLead(
            crm_id=crm_id,
            phone=phone,
            email=email,
            first_name=first_name,
            last_name=last_name,
            product=product,
            lead_status=lead_status,
            custom=custom or {},
        ),
        steps={"authentication": 0.2, "field_mapping": 0.4, "validation": 0.1, "enqueue": 2.0},
        replay_of=replay_of,
    )


# --- outcomes ---------------------------------------------------------------------------


class Common(TypedDict, total=False):
    """What every outcome builder takes besides its own fields (each optional; the
    defaults depend on the outcome: a failure takes longer than a rejection)."""

    request_id: uuid.UUID
    received_at: datetime
    duration_ms: float
    steps: dict[str, float]
    payload: Any
    canaries: bool
    replay_of: uuid.UUID


def _outcome_fields(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID | None,
    common: Common,
    *,
    duration_ms: float,
    steps: dict[str, float],
    payload: Any,
) -> dict[str, Any]:
    """What every outcome carries: ids, times, the request, the processing timings."""
    rid = common.get("request_id") or uuid.uuid4()
    hook = webhook_id or uuid.uuid4()
    received = common.get("received_at") or datetime.now(UTC)
    duration_ms = common.get("duration_ms", duration_ms)
    end = received + timedelta(milliseconds=duration_ms)
    headers = {**SAFE_HEADERS, **(CANARY_HEADERS if common.get("canaries") else {})}
    return {
        "event_id": outcome_event_id(rid),
        "request_id": rid,
        "workspace_id": workspace_id,
        "webhook_id": hook,
        "occurred_at": end,
        "received_at": received,
        "request": RawRequest(
            path=f"/webhooks/{hook}",
            headers=headers,
            content_type="application/json",
            payload=common.get("payload", payload),
        ),
        "processing": Processing(
            start=received, end=end, duration_ms=duration_ms, steps=common.get("steps", steps)
        ),
        "replay_of": common.get("replay_of"),
    }


def processed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID | None = None,
    *,
    lead: MappedLead | None = None,
    first_name: str | None = "Benjie",
    last_name: str | None = "Malinao",
    phone: str | None = "+16266633444",
    email: str | None = "benjie.malinao@example.com",
    product: str | None = "Solar",
    lead_status: str | None = "new",
    custom: dict[str, Any] | None = None,
    action: Literal["created", "updated"] | None = None,
    match_type: MatchType | None = None,
    board_name: str | None = None,
    rule_applied: bool = True,
    **common: Unpack[Common],
) -> LeadProcessed:
    """A processed lead. ``lead`` replaces the one made of the person's fields; ``action``
    and ``match_type`` follow each other when only one is given (created = a new contact,
    updated = matched by phone unless said otherwise)."""
    if lead is None:
        lead = MappedLead(
            phone=phone,
            email=email,
            first_name=first_name,
            last_name=last_name,
            product=product,
            lead_status=lead_status,
            custom=custom or {},
        )
    if match_type is None:
        match_type = "phone" if action == "updated" else "new"
    if action is None:
        action = "created" if match_type == "new" else "updated"
    fields = _outcome_fields(
        workspace_id, webhook_id, common, duration_ms=45.0, steps=STEPS, payload=_payload_of(lead)
    )
    return LeadProcessed(
        **fields,
        lead=lead,
        lead_id=uuid.uuid4(),
        contact=ContactSummary(
            id=uuid.uuid4(),
            phone=lead.phone,
            email=lead.email,
            first_name=lead.first_name,
            last_name=lead.last_name,
            product=lead.product,
            lead_status=lead.lead_status,
            board_id=uuid.uuid4() if board_name else None,
            board_name=board_name,
        ),
        action=action,
        match_type=match_type,
        is_new_contact=action == "created",
        rule_applied=rule_applied,
    )


def failed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID | None = None,
    *,
    error_type: str = "database_error",
    message: str = "could not write contact for +16266633444",
    **common: Unpack[Common],
) -> LeadFailed:
    """An accepted request the processor could not process."""
    fields = _outcome_fields(
        workspace_id, webhook_id, common, duration_ms=120.0, steps=STEPS, payload=_payload_of()
    )
    return LeadFailed(**fields, error=ErrorInfo(type=error_type, message=message))


def rejected(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID | None = None,
    *,
    status_code: int = 400,
    reason: str = "validation_failed",
    errors: list[FieldError] | None = None,
    **common: Unpack[Common],
) -> LeadRejected:
    """A request the gateway refused (by default: an invalid phone)."""
    fields = _outcome_fields(
        workspace_id,
        webhook_id,
        common,
        duration_ms=3.0,
        steps=REJECTED_STEPS,
        payload=_payload_of(),
    )
    invalid_phone = FieldError(field="phone", code="invalid_phone", message="not a phone number")
    return LeadRejected(
        **fields,
        status_code=status_code,
        reason=reason,
        errors=[invalid_phone] if errors is None else errors,
    )


def _payload_of(lead: MappedLead | None = None) -> dict[str, Any]:
    """The vendor body a lead was mapped from (by default Benjie's)."""
    lead = lead or MappedLead(
        phone="+16266633444", email="benjie.malinao@example.com", first_name="Benjie"
    )
    body = {"firstname": lead.first_name, "lastname": lead.last_name, "phone_number": lead.phone}
    body |= {"email": lead.email, "product": lead.product, **lead.custom}
    return {k: v for k, v in body.items() if v is not None}


def mixed_outcomes(
    n: int, workspace_id: uuid.UUID, webhook_id: uuid.UUID, **fields: Any
) -> list[Outcome]:
    """``n`` outcomes cycling processed, failed, rejected; ``fields`` go to every one
    (``received_at``, ``canaries``, ...)."""
    makers = (processed, failed, rejected)
    return [makers[i % 3](workspace_id, webhook_id, **fields) for i in range(n)]


def alert(
    workspace_id: uuid.UUID,
    *,
    webhook_id: uuid.UUID | None = None,
    metric: Literal["error_rate", "p95_processing_time"] = "error_rate",
    value: float = 0.25,
    threshold: float = 0.1,
    state: Literal["firing", "resolved"] = "firing",
) -> PerformanceAlert:
    return PerformanceAlert(
        event_id=uuid.uuid4(),
        workspace_id=workspace_id,
        webhook_id=webhook_id or uuid.uuid4(),
        metric=metric,
        value=value,
        threshold=threshold,
        state=state,
        occurred_at=datetime.now(UTC) - timedelta(seconds=1),
    )


def health_alert(
    *,
    service: str = "analytics",
    check: str = "consumer",
    state: Literal["firing", "resolved"] = "firing",
    detail: str = '{"stuck":[{"topic":"outcomes","partition":0,"offset":7}]}',
    since: datetime | None = None,
) -> SystemHealthAlert:
    """A system-health alert as a service's health monitor publishes it (keyed by service)."""
    since = since or datetime.now(UTC) - timedelta(seconds=90)
    return SystemHealthAlert(
        event_id=health_event_id(service, check, since, state),
        service=service,
        check=check,
        state=state,
        detail=detail,
        instance="host-1:4242",
        since=since,
        occurred_at=datetime.now(UTC) - timedelta(seconds=1),
    )


# --- as consumed, as published ----------------------------------------------------------


def as_messages(
    events: Iterable[Any], start: int = 0, topic: str = topics.OUTCOMES
) -> list[Message[Any]]:
    """Events as a consumer runner hands them over (partition 0, offsets from ``start``)."""
    return [
        Message(
            topic=topic, partition=0, offset=start + i, key=None, value=e, raw=b"", timestamp_ms=0
        )
        for i, e in enumerate(events)
    ]


async def publish_events(
    settings: CommonSettings,
    events: Iterable[Event | bytes | tuple[str, Event | bytes]],
    *,
    logical: str = topics.OUTCOMES,
    key: str | None = None,
    chunk: int = 200,
) -> None:
    """Publish to the test's topic and wait for the acks. An event is keyed by its
    workspace (as the gateway and the processor do; a health alert by its service); raw
    bytes by ``key``; a
    ``(key, event)`` pair by its own key (to spread one workspace over partitions)."""
    items: list[tuple[str | None, bytes]] = []
    for ev in events:
        k, value = ev if isinstance(ev, tuple) else (None, ev)
        if isinstance(value, bytes):
            items.append((k or key, value))
        elif isinstance(value, SystemHealthAlert):  # of no workspace: keyed by its service
            items.append((k or value.service, encode(value)))
        else:
            items.append((k or str(value.workspace_id), encode(value)))
    # A topic the test has not created yet: leaders elected before the first send.
    await ensure_topics(settings, [logical])
    async with Publisher(settings, client_id="test-publisher") as pub:
        for i in range(0, len(items), chunk):
            await pub.publish_many(logical, items[i : i + chunk], timeout=30)
