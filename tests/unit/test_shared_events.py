"""Event schemas: round trips, discriminated unions, and the ids that make consumers idempotent."""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import shared.events
from shared.events import (
    Consent,
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
    lead_received_json,
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


# --- the gateway's encoding of LeadReceived (lead_received_json) ------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)
_TEXT = st.none() | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    payload=_JSON,
    custom=st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
    names=st.tuples(_TEXT, _TEXT, _TEXT),
    key=_TEXT,
    headers=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    steps=st.dictionaries(st.sampled_from(["receive", "validation"]), st.floats(0, 1e4)),
    awaited=st.booleans(),
    micros=st.integers(0, 999_999),
    offset_h=st.sampled_from([0, 2, -5]),
)
def test_the_gateways_encoding_is_the_models_byte_for_byte(
    payload: object,
    custom: dict[str, object],
    names: tuple[str | None, str | None, str | None],
    key: str | None,
    headers: dict[str, str],
    steps: dict[str, float],
    awaited: bool,
    micros: int,
    offset_h: int,
) -> None:
    """lead_received_json writes what encode(LeadReceived(...)) writes, for any payload:
    a field added to the model without it fails here."""
    lead = MappedLead(
        phone="+16266633444",
        email=names[0],
        first_name=names[1],
        crm_id=names[2],
        custom=custom,
        consent=Consent(
            tcpa_consent=True,
            trustedform_cert_url=key,
            tcpa_consent_at=utcnow().astimezone(timezone(timedelta(hours=offset_h))),
        )
        if awaited
        else None,
    )
    request: dict[str, Any] = {
        "method": "POST",
        "path": "/webhooks/x",
        "headers": headers,
        "content_type": "application/json",
        "payload": payload,
    }
    fields: dict[str, Any] = {
        "request_id": uuid.uuid4(),
        "workspace_id": uuid.uuid4(),
        "webhook_id": uuid.uuid4(),
        "received_at": utcnow().replace(microsecond=micros),
        "idempotency_key": key,
        "body_sha256": "ab" * 32,
        "lead": lead,
        "steps": steps,
        "awaited": awaited,
    }
    fast = lead_received_json(request=request, **fields)
    assert fast == encode(LeadReceived(request=RawRequest(**request), **fields))
    assert decode_raw(fast).lead == lead


def test_a_value_orjson_does_not_write_goes_the_models_way() -> None:
    """An integer past 64 bits (orjson refuses it): the model's encoding, not an error."""
    fields: dict[str, Any] = {
        "request_id": uuid.uuid4(),
        "workspace_id": uuid.uuid4(),
        "webhook_id": uuid.uuid4(),
        "received_at": utcnow(),
        "idempotency_key": None,
        "body_sha256": "ab" * 32,
        "lead": MappedLead(email="a@b.co"),
        "steps": {},
        "awaited": False,
    }
    request: dict[str, Any] = {
        "path": "/w",
        "headers": {},
        "content_type": "application/json",
        "payload": 2**70,
    }
    fast = lead_received_json(request=request, **fields)
    assert decode_raw(fast).request.payload == 2**70
    assert fast == encode(LeadReceived(request=RawRequest(**request), **fields))


def test_ids_as_postgres_hands_them_over_take_the_fast_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A webhook's ids come from asyncpg as its own UUID subclass, which orjson does not
    write by itself: every real request went the model's way (~8 % of a gateway worker's
    CPU) until orjson was told to write them as text."""
    from asyncpg.pgproto.pgproto import UUID as PgUUID

    fields: dict[str, Any] = {
        "request_id": uuid.uuid4(),
        "workspace_id": PgUUID(str(uuid.uuid4())),
        "webhook_id": PgUUID(str(uuid.uuid4())),
        "received_at": utcnow(),
        "idempotency_key": None,
        "body_sha256": "ab" * 32,
        "lead": MappedLead(email="a@b.co", custom={"ref": PgUUID(str(uuid.uuid4()))}),
        "steps": {"receive": 0.1},
        "awaited": False,
    }
    request: dict[str, Any] = {"path": "/w", "headers": {}, "content_type": "x", "payload": {}}
    expected = encode(LeadReceived(request=RawRequest(**request), **fields))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("went the model's way")

    monkeypatch.setattr(shared.events, "LeadReceived", refuse)
    assert lead_received_json(request=request, **fields) == expected
