"""Dispatcher logic with fakes: batching, retries, dead-lettering decisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.dispatcher import Dispatcher, batches, retry_delay
from services.notifier.ledger import ClaimedSend, DeadSend, deadletter_entry
from services.notifier.render import Item
from services.notifier.senders import SendError
from shared.settings import CommonSettings
from tests.support.notifier import notifier_settings

pytestmark = pytest.mark.unit

WS = uuid.uuid4()


def _row(recipient: str, attempts: int = 1, channel: str = "email") -> ClaimedSend:
    return ClaimedSend(
        id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        workspace_id=WS,
        channel=channel,
        recipient=recipient,
        kinds=("lead_created",),
        summary={"event_id": "e", "workspace_id": str(WS)},
        attempts=attempts,
        event_at=datetime.now(UTC),
    )


def test_retry_delay_doubles() -> None:
    assert [retry_delay(n, 1.0, jitter=0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert 0.9 <= retry_delay(1, 1.0) <= 1.1


def test_batches_group_per_recipient_and_channel() -> None:
    rows = [_row("a"), _row("b"), _row("a"), _row("a", channel="sms")]
    groups = batches(rows)
    assert [[r.recipient for r in g] for g in groups] == [["a", "a"], ["b"], ["a"]]


def test_deadletter_entry_counts_attempts() -> None:
    dead = [
        DeadSend(
            id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            workspace_id=WS,
            channel="sms",
            recipient="+15550001111",
            kinds=("lead_created", "high_priority"),
            attempts=3,
            last_error="SMS provider answered 500",
            claim_id=None,
        )
    ]
    entry = deadletter_entry(dead, reason="retries_exhausted", failed_at=datetime.now(UTC))
    assert entry["attempts"] == 3 and entry["retries"] == 2
    assert entry["event_ids"] == [str(dead[0].event_id)]
    assert entry["last_error"] == "SMS provider answered 500"


class FakeRepo:
    def __init__(self) -> None:
        self.sent: list[uuid.UUID] = []
        self.retried: list[uuid.UUID] = []
        self.dead: list[uuid.UUID] = []

    async def mark_sent(self, ids: Sequence[uuid.UUID], **_: Any) -> list[Any]:
        self.sent += ids
        return [(i, datetime.now(UTC), datetime.now(UTC)) for i in ids]

    async def mark_retry(self, ids: Sequence[uuid.UUID], **_: Any) -> int:
        self.retried += ids
        return len(ids)

    async def mark_dead(self, ids: Sequence[uuid.UUID], **kw: Any) -> dict[str, Any]:
        self.dead += ids
        return {
            "send_ids": [str(i) for i in ids],
            "attempts": 3,
            "deadletter_id": "d",
            "channel": "email",
        }

    async def publish_deadletters(self, publish: Any) -> int:
        return 0


class FailingSender:
    channel = "email"

    def __init__(self, error: SendError | None) -> None:
        self.error = error
        self.calls = 0

    async def send(self, recipient: str, items: Sequence[Item]) -> str | None:
        self.calls += 1
        if self.error:
            raise self.error
        return "ref"


def _dispatcher(sender: FailingSender) -> tuple[Dispatcher, FakeRepo]:
    repo = FakeRepo()
    settings = notifier_settings(CommonSettings())
    d = Dispatcher(repo=repo, senders={"email": sender}, publisher=None, settings=settings)  # type: ignore[arg-type]
    return d, repo


async def test_transient_failure_retries_until_the_budget_is_spent() -> None:
    d, repo = _dispatcher(FailingSender(SendError("down", code="x")))
    first, last = _row("a", attempts=1), _row("a", attempts=3)
    await d._send_batch(uuid.uuid4(), [first, last])
    assert repo.retried == [first.id] and repo.dead == [last.id] and repo.sent == []


async def test_permanent_failure_is_deadlettered_at_once() -> None:
    d, repo = _dispatcher(
        FailingSender(SendError("550 no such user", code="smtp_550", permanent=True))
    )
    row = _row("a", attempts=1)
    await d._send_batch(uuid.uuid4(), [row])
    assert repo.dead == [row.id] and repo.retried == []


async def test_success_marks_sent() -> None:
    sender = FailingSender(None)
    d, repo = _dispatcher(sender)
    rows = [_row("a"), _row("a")]
    await d._send_batch(uuid.uuid4(), rows)
    assert sender.calls == 1 and repo.sent == [r.id for r in rows]


def test_send_error_scrubs_addresses() -> None:
    err = SendError("550 <jane@example.com> unknown, call +1 555 123 4567", code="smtp_550")
    assert "jane@example.com" not in str(err) and "555 123 4567" not in str(err)
