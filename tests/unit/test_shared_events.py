"""Event schemas: round trips, discriminated unions, and the ids that make consumers idempotent."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from shared.events import (
    ContactSummary,
    LeadProcessed,
    LeadReceived,
    LeadRejected,
    MappedLead,
    Processing,
    RawRequest,
    decode_outcome,
    decode_raw,
    encode,
    outcome_event_id,
    request_id_for,
    utcnow,
)

pytestmark = pytest.mark.unit


def _request() -> RawRequest:
    return RawRequest(
        path="/webhooks/x",
        headers={"content-type": "application/json"},
        content_type="application/json",
        payload={"a": 1},
    )


def test_lead_received_round_trip() -> None:
    event = LeadReceived(
        request_id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        webhook_id=uuid.uuid4(),
        received_at=utcnow(),
        body_sha256="0" * 64,
        request=_request(),
        lead=MappedLead(phone="+16266633444", custom={"utm": "x"}),
    )
    assert decode_raw(encode(event)) == event
    assert event.event_id == event.request_id


def test_outcomes_decode_to_their_type() -> None:
    rid = uuid.uuid4()
    now = utcnow()
    common = dict(
        event_id=outcome_event_id(rid),
        request_id=rid,
        workspace_id=uuid.uuid4(),
        webhook_id=uuid.uuid4(),
        occurred_at=now,
        received_at=now,
        request=_request(),
        processing=Processing(
            start=now, end=now, duration_ms=1.5, steps={"contact_processing": 0.5}
        ),
    )
    processed = LeadProcessed(
        **common,
        lead=MappedLead(email="a@b.co"),
        lead_id=uuid.uuid4(),
        contact=ContactSummary(id=uuid.uuid4()),
        action="created",
        match_type="new",
        is_new_contact=True,
        rule_applied=False,
    )
    rejected = LeadRejected(**common, status_code=400, reason="validation")
    assert isinstance(decode_outcome(encode(processed)), LeadProcessed)
    assert isinstance(decode_outcome(encode(rejected)), LeadRejected)
    with pytest.raises(ValidationError):
        decode_outcome(b'{"type": "lead.unknown"}')


def test_events_are_frozen() -> None:
    lead = MappedLead(phone="+16266633444")
    with pytest.raises(ValidationError):
        lead.phone = "+1"  # type: ignore[misc]


def test_retry_with_same_key_gets_same_request_id() -> None:
    wh = uuid.uuid4()
    assert request_id_for(wh, "msg_1") == request_id_for(wh, "msg_1")
    assert request_id_for(wh, "msg_1") != request_id_for(wh, "msg_2")
    assert request_id_for(wh, "msg_1") != request_id_for(uuid.uuid4(), "msg_1")
    assert request_id_for(wh, None) != request_id_for(wh, None)


def test_one_outcome_event_id_per_request() -> None:
    rid = uuid.uuid4()
    assert outcome_event_id(rid) == outcome_event_id(rid) != rid


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    lead = MappedLead.model_validate({"phone": "+16266633444", "added_later": 1})
    assert lead.phone == "+16266633444"


def test_lead_field_falls_back_to_custom() -> None:
    lead = MappedLead(product="Solar", custom={"state": "CA"})
    assert lead.field("product") == "Solar" and lead.field("state") == "CA"
    assert lead.field("missing") is None
