"""The notifier and the suppression list: no email or SMS is recorded for a recipient on
the workspace's list, and a lead processed with the ``suppressed`` flag gets no SMS (its
email and real-time notices still go)."""

from __future__ import annotations

import pytest

from services.notifier.fake_repository import FakeRepository
from services.notifier.handlers import handle_events
from shared.events import encode
from shared.kafka import Message
from shared.suppression import entry_hash
from tests.support.events import processed

pytestmark = pytest.mark.unit

RULES = {
    "rules": [
        {
            "event": "lead_created",
            "channel": "email",
            "recipients": ["ops@acme.io", "no@acme.io"],
        },
        {"event": "lead_created", "channel": "sms", "recipients": ["+16266633444", "+12025550143"]},
        {"event": "lead_created", "channel": "realtime", "recipients": []},
    ]
}


async def _handle(repo: FakeRepository, *events: object) -> None:
    messages = [
        Message("outcomes", 0, i, None, e, encode(e), 0)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]
    await handle_events(messages, repo=repo, on_recorded=lambda: None, max_age_s=86400.0)  # type: ignore[arg-type]


def _recipients(repo: FakeRepository) -> set[tuple[str, str]]:
    return {(channel, recipient) for (_, channel, recipient) in repo.statuses()}


async def test_no_send_goes_to_a_suppressed_number_or_address() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme", settings=RULES)
    # Stored as the CLI stores them: normalized in the workspace's region, hashed.
    repo.suppressions.add((ws, "email", entry_hash("email", "NO@Acme.io", "US")))
    repo.suppressions.add((ws, "phone", entry_hash("phone", "(202) 555-0143", "US")))
    await _handle(repo, processed(ws))
    assert _recipients(repo) == {
        ("email", "ops@acme.io"),
        ("sms", "+16266633444"),
        ("realtime", str(ws)),
    }


async def test_a_flagged_lead_gets_no_sms() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme", settings=RULES)
    flagged = processed(ws).model_copy(update={"flags": ["suppressed"]})
    await _handle(repo, flagged)
    channels = {channel for channel, _ in _recipients(repo)}
    assert channels == {"email", "realtime"}
