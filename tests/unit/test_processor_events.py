"""Decoding raw messages, outcome encoding and lock keys (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from services.processor.decode import Undecodable, decode_message
from services.processor.outcomes import PublishedIds, outcome_json
from services.processor.repository import lock_key
from services.processor.transaction import conflict_request_id, lock_keys_of
from shared.events import (
    ErrorInfo,
    LeadFailed,
    LeadReceived,
    MappedLead,
    Processing,
    RawRequest,
    decode_outcome,
    encode,
    outcome_event_id,
)
from shared.kafka import Message

pytestmark = pytest.mark.unit

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def received(**lead: object) -> LeadReceived:
    return LeadReceived(
        request_id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        webhook_id=uuid.uuid4(),
        received_at=NOW,
        idempotency_key="k1",
        body_sha256="ab" * 32,
        request=RawRequest(
            path="/webhooks/x", headers={}, content_type="application/json", payload={"a": 1}
        ),
        lead=MappedLead(**lead),
    )


def msg(value: object) -> Message[object]:
    return Message(
        topic="raw", partition=0, offset=0, key=None, value=value, raw=b"", timestamp_ms=0
    )


def test_decode_valid_and_invalid() -> None:
    ev = received(phone="+15550000001")
    assert decode_message(encode(ev)) == ev
    bad = decode_message(b"not json at all")
    assert isinstance(bad, Undecodable) and bad.fields == {}
    doc = orjson.loads(encode(ev))
    doc["lead"]["phone"] = 12345678901  # wrong type; the value must not show in the error
    doc["received_at"] = "yesterday"
    bad = decode_message(orjson.dumps(doc))
    assert isinstance(bad, Undecodable)
    assert "lead.phone" in bad.error and "received_at" in bad.error
    assert "12345678901" not in bad.error and "yesterday" not in bad.error
    assert bad.fields["request_id"] == str(ev.request_id)


def test_outcome_json_drops_nul_characters() -> None:
    rid = uuid.uuid4()
    event = LeadFailed(
        event_id=outcome_event_id(rid),
        request_id=rid,
        workspace_id=uuid.uuid4(),
        webhook_id=uuid.uuid4(),
        occurred_at=NOW,
        received_at=NOW,
        request=RawRequest(
            path="/x", headers={}, content_type="text/plain", payload={"n\x00": "a\x00b"}
        ),
        processing=Processing(start=NOW, end=NOW, duration_ms=0),
        error=ErrorInfo(type="T", message="m"),
    )
    text = outcome_json(event)
    assert "\\u0000" not in text
    back = decode_outcome(text.encode())
    assert back.request.payload == {"n": "ab"} and back.event_id == event.event_id


def test_lock_keys_cover_every_identity_and_keyless_requests() -> None:
    a = received(crm_id="c", phone="+15550000001", email="a@x.io")
    keyless = received()
    keys = lock_keys_of([msg(a), msg(keyless)])  # type: ignore[list-item]
    assert keys == [
        lock_key(a.workspace_id, "crm_id", "c"),
        lock_key(a.workspace_id, "phone", "+15550000001"),
        lock_key(a.workspace_id, "email", "a@x.io"),
        lock_key("request", keyless.request_id),
    ]
    assert len(set(keys)) == 4
    assert -(2**63) <= min(keys) and max(keys) < 2**63


def test_conflict_request_id_is_deterministic_per_body() -> None:
    a = received(phone="+15550000001")
    same = a.model_copy()
    other = a.model_copy(update={"body_sha256": "cd" * 32})
    assert conflict_request_id(a) == conflict_request_id(same)
    assert conflict_request_id(a) != conflict_request_id(other) != a.request_id


def test_published_ids_are_bounded() -> None:
    ids = PublishedIds(limit=3)
    first = uuid.uuid4()
    ids.add(first)
    for _ in range(3):
        ids.add(uuid.uuid4())
    assert first not in ids
