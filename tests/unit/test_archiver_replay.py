"""Replay planning (current mapping, identity, links) and finding archived requests
through the index, with first-layout objects beside segments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.archiver import replay
from services.archiver.handlers import SegmentWriter
from services.archiver.index import FakeIndex
from services.archiver.replay import WebhookConfig
from services.archiver.repository import FakeArchive
from services.archiver.search import find_archived
from shared.events import LeadReceived, LeadRejected, request_id_for
from tests.support.archiver import FIXED_MAPPING, WRONG_MAPPING, write_legacy
from tests.support.events import as_messages, failed, processed, rejected

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
PAYLOAD = {"phone_number": "(415) 555-0100", "mail": "Jane@Example.COM", "fname": "Jane"}


def webhook(mapping: list[dict[str, Any]]) -> WebhookConfig:
    return WebhookConfig(
        id=uuid.UUID("33333333-3333-4333-8333-333333333333"),
        workspace_id=uuid.UUID("44444444-4444-4444-8444-444444444444"),
        name="vendor",
        workspace_name="acme",
        status="active",
        workspace_status="active",
        mapping=mapping,
        default_region="US",
    )


Store = tuple[FakeArchive, FakeIndex]


async def archived(events: list[Any], *, legacy: bool = False) -> Store:
    """The events archived in segments (or, ``legacy``, in the first layout)."""
    archive, index = FakeArchive(), FakeIndex()
    if legacy:
        for e in events:
            await write_legacy(archive, e)
    else:
        writer = SegmentWriter(archive=archive, index=index)
        await writer.handle(as_messages(events))
        await writer.flush()
    return archive, index


async def load(store: Store, hook: WebhookConfig, **kw: Any) -> list[Any]:
    return await find_archived(
        *store,
        workspace_id=hook.workspace_id,
        webhook_id=hook.id,
        since=NOW - timedelta(days=3),
        until=NOW,
        **kw,
    )


@pytest.mark.parametrize("legacy", [False, True])
async def test_find_filters_by_window_and_status(legacy: bool) -> None:
    hook = webhook(FIXED_MAPPING)
    ws, wh = hook.workspace_id, hook.id
    inside = [
        rejected(ws, wh, received_at=NOW - timedelta(days=2, hours=3)),
        failed(ws, wh, received_at=NOW - timedelta(hours=5)),
        processed(ws, wh, received_at=NOW - timedelta(hours=1)),
    ]
    outside = [
        failed(ws, wh, received_at=NOW - timedelta(days=3, minutes=1)),  # before since
        failed(ws, wh, received_at=NOW + timedelta(minutes=1)),  # at/after until
        failed(ws, uuid.uuid4(), received_at=NOW - timedelta(hours=2)),  # another webhook
    ]
    store = await archived(inside + outside, legacy=legacy)
    found = await load(store, hook)
    assert [e.request_id for e in found] == [e.request_id for e in inside]
    assert [e.status for e in found] == ["rejected", "failed", "processed"]
    only_failed = await load(store, hook, status="failed")
    assert [e.request_id for e in only_failed] == [inside[1].request_id]


async def test_replay_maps_with_the_current_mapping_and_links_the_original() -> None:
    hook = webhook(FIXED_MAPPING)
    original = rejected(
        hook.workspace_id,
        hook.id,
        received_at=NOW - timedelta(hours=2),
        payload=PAYLOAD,
        canaries=True,  # the archived request carries secrets the replay must not
    )
    store = await archived([original])
    entries = await load(store, hook)
    fp = replay.mapping_fingerprint(hook.mapping, hook.default_region)
    (item,) = replay.plan(
        entries, webhook=hook, mapper=replay.compile_mapper(hook), fingerprint=fp, now=NOW
    )
    assert item.kind == "replay"
    event = item.event
    assert isinstance(event, LeadReceived)
    assert event.replay_of == original.request_id
    assert event.request_id != original.request_id
    assert event.idempotency_key == f"replay:{original.request_id}:{fp}"
    assert event.request_id == request_id_for(hook.id, event.idempotency_key)
    assert event.source == "replay" and event.received_at == NOW
    assert event.lead.phone == "+14155550100"
    assert event.lead.email == "jane@example.com"
    assert event.lead.first_name == "Jane"
    assert event.request.payload == PAYLOAD
    assert "authorization" not in event.request.headers
    described = item.describe()
    assert described["archived"]["status"] == "rejected"
    assert described["current"]["lead"]["phone"] == "+14155550100"

    # Replaying again with the same mapping: the same new request (nothing created twice).
    (again,) = replay.plan(
        entries, webhook=hook, mapper=replay.compile_mapper(hook), fingerprint=fp
    )
    assert again.request_id == event.request_id
    # After another mapping change it is a new request.
    other = webhook([*FIXED_MAPPING, {"source": "fname", "target": "custom.nick"}])
    fp2 = replay.mapping_fingerprint(other.mapping, other.default_region)
    (changed,) = replay.plan(
        entries, webhook=other, mapper=replay.compile_mapper(other), fingerprint=fp2
    )
    assert changed.request_id != event.request_id


async def test_invalid_under_the_current_mapping_becomes_a_rejection() -> None:
    hook = webhook(WRONG_MAPPING)
    original = processed(
        hook.workspace_id, hook.id, received_at=NOW - timedelta(hours=2), payload=PAYLOAD
    )
    entries = await load(await archived([original]), hook)
    fp = replay.mapping_fingerprint(hook.mapping, hook.default_region)
    (item,) = replay.plan(
        entries, webhook=hook, mapper=replay.compile_mapper(hook), fingerprint=fp, now=NOW
    )
    assert item.kind == "rejected"
    assert isinstance(item.event, LeadRejected)
    assert item.event.replay_of == original.request_id
    assert item.event.errors and item.errors
    summary = replay.Summary()
    summary.count([item])
    assert summary.as_dict() == {"found": 1, "replayed": 0, "rejected": 1, "skipped": 0}


async def test_a_replay_and_its_original_in_one_window_replay_once() -> None:
    hook = webhook(FIXED_MAPPING)
    ws, wh = hook.workspace_id, hook.id
    original = failed(ws, wh, received_at=NOW - timedelta(hours=3), payload=PAYLOAD)
    earlier_replay = failed(ws, wh, received_at=NOW - timedelta(hours=1), payload=PAYLOAD)
    earlier_replay = earlier_replay.model_copy(update={"replay_of": original.request_id})
    not_an_object = failed(ws, wh, received_at=NOW - timedelta(hours=2))
    not_an_object = not_an_object.model_copy(
        update={"request": not_an_object.request.model_copy(update={"payload": "phone=1"})}
    )
    entries = await load(await archived([original, earlier_replay, not_an_object]), hook)
    fp = replay.mapping_fingerprint(hook.mapping, hook.default_region)
    items = replay.plan(entries, webhook=hook, mapper=replay.compile_mapper(hook), fingerprint=fp)
    assert [i.kind for i in items] == ["replay", "skipped", "skipped"]
    assert items[0].event is not None and items[0].event.replay_of == original.request_id
    assert "not a JSON object" in (items[1].reason or "")
    assert "already replayed" in (items[2].reason or "")


def test_changed_fields() -> None:
    before = {"phone": None, "email": "a@x.com", "custom": {"a": 1}}
    after = {"phone": "+14155550100", "email": "a@x.com", "custom": {"a": 2, "b": 1}}
    assert replay.changed_fields(before, after) == ["custom.a", "custom.b", "phone"]
    assert replay.changed_fields(None, after) == []
