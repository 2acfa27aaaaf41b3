"""The notifier's consumer handler on the in-memory repository: which send rows and
real-time pushes a batch of events makes, and that a redelivered batch makes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.notifier.fake_repository import FakeRepository
from services.notifier.handlers import decode_notifiable, handle_events
from services.notifier.rules import Notifiable
from shared.events import encode
from shared.kafka import Message
from tests.support.events import alert, failed, health_alert, processed

pytestmark = pytest.mark.unit

OPS = "ops@acme.test"
EMAIL_RULES = {"rules": [{"event": "lead_created", "channel": "email", "recipients": [OPS]}]}
DAY_S = 86400.0


def _messages(*events: Notifiable) -> list[Message[Notifiable]]:
    return [
        Message("outcomes", 0, offset, None, event, encode(event), 0)
        for offset, event in enumerate(events)
    ]


class Woken:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def _handle(repo: FakeRepository, *events: Notifiable, max_age_s: float = DAY_S) -> int:
    woken = Woken()
    await handle_events(_messages(*events), repo=repo, on_recorded=woken, max_age_s=max_age_s)
    return woken.calls


async def test_default_rules_push_every_lead_in_real_time_and_nothing_else() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme")
    lead = processed(ws)
    assert await _handle(repo, lead) == 0  # nothing for the dispatcher to send
    assert repo.statuses() == {(lead.event_id, "realtime", str(ws)): "sent"}
    [notice] = [orjson.loads(n) for n in repo.notices]
    assert notice["event"] == "lead" and notice["workspace_id"] == str(ws)
    assert notice["data"]["event_id"] == str(lead.event_id)
    assert notice["data"]["contact"]["first_name"] == lead.contact.first_name


async def test_an_email_rule_queues_a_pending_row_and_wakes_the_dispatcher() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme", settings=EMAIL_RULES)
    lead = processed(ws)
    assert await _handle(repo, lead) == 1
    assert repo.statuses() == {(lead.event_id, "email", OPS): "pending"}
    assert repo.notices == []


async def test_a_redelivered_batch_records_nothing_and_pushes_nothing() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace(
        "Acme",
        settings={
            "rules": [
                *EMAIL_RULES["rules"],
                {"event": "lead_created", "channel": "realtime", "recipients": []},
            ]
        },
    )
    lead = processed(ws)
    assert await _handle(repo, lead) == 1
    before = (repo.statuses(), list(repo.notices))
    assert await _handle(repo, lead, lead) == 0
    assert (repo.statuses(), repo.notices) == before
    assert len(repo.notices) == 1


async def test_events_past_retention_are_not_notified() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme", settings=EMAIL_RULES)
    old = processed(ws).model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(days=2)})
    assert await _handle(repo, old, max_age_s=DAY_S) == 0
    assert repo.rows == {}


async def test_invalid_stored_settings_fall_back_to_the_defaults() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace("Acme", settings={"rules": [{"event": "nope", "channel": "fax"}]})
    lead = processed(ws)
    await _handle(repo, lead)
    assert repo.statuses() == {(lead.event_id, "realtime", str(ws)): "sent"}


async def test_failures_and_alerts_reach_only_the_rules_that_name_them() -> None:
    repo = FakeRepository()
    ws = repo.add_workspace(
        "Acme",
        settings={
            "rules": [
                {"event": "processing_failed", "channel": "email", "recipients": [OPS]},
                {"event": "performance_alert", "channel": "email", "recipients": [OPS]},
            ]
        },
    )
    f, a, lead = failed(ws), alert(ws), processed(ws)
    assert await _handle(repo, f, a, lead) == 1
    assert repo.statuses() == {
        (f.event_id, "email", OPS): "pending",
        (a.event_id, "email", OPS): "pending",
    }


def test_decoding_reads_outcomes_and_alerts_by_their_type() -> None:
    for event in (
        processed(FakeRepository().add_workspace()),
        alert(FakeRepository().add_workspace()),
        health_alert(),
    ):
        assert decode_notifiable(encode(event)) == event


HEALTH_EMAIL = {"rules": [{"event": "system_health", "channel": "email", "recipients": [OPS]}]}


async def test_a_health_alert_goes_to_every_workspace_with_a_system_health_rule() -> None:
    repo = FakeRepository()
    mailing = repo.add_workspace("Acme", settings=HEALTH_EMAIL)
    pushing = repo.add_workspace(
        "Beta", settings={"rules": [{"event": "system_health", "channel": "realtime"}]}
    )
    repo.add_workspace("Quiet", settings=EMAIL_RULES)  # no system_health rule
    repo.add_workspace("Defaults")  # default rules: leads only
    event = health_alert(service="archiver", check="archive_behind")
    assert await _handle(repo, event) == 1
    assert repo.statuses() == {
        (event.event_id, "email", OPS): "pending",
        (event.event_id, "realtime", str(pushing)): "sent",
    }
    row = repo.rows[(event.event_id, "email", OPS)]
    assert row.send.workspace_id == mailing
    assert row.send.summary["health"]["check"] == "archive_behind"
    assert row.send.summary["workspace_name"] == "Acme"
    [notice] = [orjson.loads(n) for n in repo.notices]
    assert notice["event"] == "system_health" and notice["workspace_id"] == str(pushing)
    assert notice["data"]["health"]["service"] == "archiver"


async def test_a_health_alert_redelivered_or_named_twice_is_one_notification() -> None:
    repo = FakeRepository()
    repo.add_workspace("Acme", settings=HEALTH_EMAIL)
    repo.add_workspace("Beta", settings=HEALTH_EMAIL)  # the same address in two workspaces
    event = health_alert()
    assert await _handle(repo, event) == 1
    assert await _handle(repo, event) == 0
    assert list(repo.statuses()) == [(event.event_id, "email", OPS)]


async def test_a_health_alert_without_any_rule_for_it_records_nothing() -> None:
    repo = FakeRepository()
    repo.add_workspace("Acme", settings=EMAIL_RULES)
    assert await _handle(repo, health_alert()) == 0
    assert repo.rows == {}
