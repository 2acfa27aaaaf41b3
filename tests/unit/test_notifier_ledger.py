"""The send ledger's rules on the in-memory repository (the ones the Postgres
implementation keeps with SQL), and the dispatcher driving it: batches wait for their
window, a claim counts the attempt, only the claim's holder marks its rows, an expired
lease is dead-lettered as interrupted (never re-sent), dead letters are published once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.dispatcher import Dispatcher
from services.notifier.fake_repository import FakeRepository
from services.notifier.ledger import NewSend
from services.notifier.render import Item
from services.notifier.senders import SendError
from shared import topics
from shared.settings import CommonSettings
from tests.support.notifier import notifier_settings

pytestmark = pytest.mark.unit

OPS = "ops@acme.test"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _send(workspace_id: uuid.UUID, recipient: str = OPS, channel: str = "email") -> NewSend:
    return NewSend(
        event_id=uuid.uuid4(),
        workspace_id=workspace_id,
        channel=channel,
        recipient=recipient,
        kinds=("lead_created",),
        summary={"event_id": "e"},
        event_at=datetime.now(UTC),
    )


async def _claim(repo: FakeRepository, claim_id: uuid.UUID | None = None) -> list[Any]:
    return await repo.claim_batches(
        claim_id=claim_id or uuid.uuid4(),
        batch_size=3,
        window_s=10,
        lease_s=30,
        max_batches=8,
    )


async def test_a_batch_goes_when_full_or_when_its_window_has_passed() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    ws = uuid.uuid4()
    await repo.record([_send(ws), _send(ws, "b@acme.test")], {})
    assert await _claim(repo) == []
    await repo.record([_send(ws), _send(ws)], {})  # three for OPS: full
    full = await _claim(repo)
    assert [r.recipient for r in full] == [OPS] * 3 and {r.attempts for r in full} == {1}
    assert await _claim(repo) == []  # claimed rows are not claimed again
    clock.advance(10)
    [late] = await _claim(repo)
    assert late.recipient == "b@acme.test"


async def test_only_the_claims_holder_marks_its_rows() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    await repo.record([_send(uuid.uuid4())], {})
    clock.advance(10)
    claim_id = uuid.uuid4()
    [row] = await _claim(repo, claim_id)
    assert await repo.mark_sent([row.id], claim_id=uuid.uuid4(), provider_ref=None) == []
    assert [
        i for i, _, _ in await repo.mark_sent([row.id], claim_id=claim_id, provider_ref="r")
    ] == [row.id]
    assert set(repo.statuses().values()) == {"sent"}


async def test_an_expired_lease_is_deadlettered_as_interrupted_and_published_once() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    await repo.record([_send(uuid.uuid4()), _send(uuid.uuid4())], {})
    clock.advance(10)
    rows = await _claim(repo)
    assert await repo.recover_interrupted(failed_at=clock.now) == []  # lease still running
    clock.advance(31)
    entries = await repo.recover_interrupted(failed_at=clock.now)
    assert sorted(e["send_ids"][0] for e in entries) == sorted(str(r.id) for r in rows)
    assert {e["reason"] for e in entries} == {"interrupted"}
    assert set(repo.statuses().values()) == {"dead"}
    assert await _claim(repo) == []
    published: list[dict[str, Any]] = []

    async def publish(entry: dict[str, Any]) -> None:
        published.append(entry)

    assert await repo.publish_deadletters(publish) == 2
    assert await repo.publish_deadletters(publish) == 0
    assert published == entries


async def test_pruning_forgets_finished_rows_past_retention_only() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    ws = uuid.uuid4()
    await repo.record([_send(ws, channel="realtime", recipient=str(ws)), _send(ws)], {})
    clock.advance(100)
    assert await repo.prune(older_than_s=50) == 1  # the pending email row stays
    assert list(repo.statuses().values()) == ["pending"]
    assert await repo.queue_depth() == {"email": 1}


class Sender:
    channel = "email"

    def __init__(self, error: SendError | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, int]] = []

    async def send(self, recipient: str, items: Sequence[Item]) -> str | None:
        if self.error is not None:
            raise self.error
        self.sent.append((recipient, len(items)))
        return "ref"


class Publisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, value: bytes, *, key: str) -> None:
        self.published.append((topic, value))


def _dispatcher(repo: FakeRepository, sender: Sender) -> tuple[Dispatcher, Publisher]:
    publisher = Publisher()
    settings = notifier_settings(
        CommonSettings(), notify_batch_size=3, notify_batch_window_s=10, notify_max_retries=2
    )
    dispatcher = Dispatcher(
        repo=repo,
        senders={"email": sender},
        publisher=publisher,  # type: ignore[arg-type]
        settings=settings,
    )
    return dispatcher, publisher


async def _drain(dispatcher: Dispatcher) -> None:
    await dispatcher.cycle()
    dispatcher.stop()
    await dispatcher.run()  # stops at once, after the sends in flight are recorded


async def test_the_dispatcher_sends_a_full_batch_as_one_message() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    ws = uuid.uuid4()
    await repo.record([_send(ws) for _ in range(4)], {})
    sender = Sender()
    dispatcher, _ = _dispatcher(repo, sender)
    await _drain(dispatcher)
    assert sender.sent == [(OPS, 3)]
    assert sorted(repo.statuses().values()) == ["pending", "sent", "sent", "sent"]


async def test_the_dispatcher_deadletters_after_the_retries_and_publishes_the_entry() -> None:
    clock = Clock()
    repo = FakeRepository(now=clock)
    await repo.record([_send(uuid.uuid4())], {})
    sender = Sender(SendError("down", code="smtp_down"))
    for _ in range(3):  # the first attempt and two retries
        clock.advance(60)
        dispatcher, publisher = _dispatcher(repo, sender)
        await _drain(dispatcher)
    assert set(repo.statuses().values()) == {"dead"}
    [(topic, _)] = publisher.published
    assert topic == topics.NOTIFY_DEADLETTER
    [entry] = repo.published
    assert entry["reason"] == "retries_exhausted" and entry["attempts"] == 3
