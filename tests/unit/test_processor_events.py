"""Decoding raw messages, outcome encoding and lock keys (no I/O)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from services.processor.decode import Undecodable, decode_message
from services.processor.outcomes import PublishedIds, outcome_json
from services.processor.repository import lock_key
from services.processor.transaction import conflict_request_id, lock_keys_of
from shared.events import decode_outcome, encode
from shared.kafka import Message
from tests.support.events import failed, received

pytestmark = pytest.mark.unit

WS, WH = uuid.uuid4(), uuid.uuid4()


def msg(value: object) -> Message[object]:
    return Message(
        topic="raw", partition=0, offset=0, key=None, value=value, raw=b"", timestamp_ms=0
    )


def test_decode_valid_and_invalid() -> None:
    ev = received(WS, WH, phone="+15550000001")
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
    event = failed(WS, WH, payload={"n\x00": "a\x00b"})
    text = outcome_json(event)
    assert "\\u0000" not in text
    back = decode_outcome(text.encode())
    assert back.request.payload == {"n": "ab"} and back.event_id == event.event_id


def test_lock_keys_cover_every_identity_and_keyless_requests() -> None:
    a = received(WS, WH, crm_id="c", phone="+15550000001", email="a@x.io")
    keyless = received(WS, WH)
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
    a = received(WS, WH, phone="+15550000001")
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
