"""What notifications say: digest emails, SMS text, real-time messages (pure logic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.notifier.ledger import NewSend, realtime_notice
from services.notifier.render import (
    SMS_MAX_CHARS,
    Item,
    realtime_message,
    render_email,
    render_sms,
    summarize,
)
from shared.events import LeadFailed, LeadProcessed, PerformanceAlert
from tests.support.events import alert, failed, health_alert, processed

pytestmark = pytest.mark.unit

WS = uuid.uuid4()
NOW = datetime(2025, 10, 25, 23, 0, 44, tzinfo=UTC)


def _item(event: object, kinds: tuple[str, ...] = ("contact_created", "lead_created")) -> Item:
    return Item(summary=summarize(event, workspace_name="Acme"), kinds=kinds)  # type: ignore[arg-type]


def test_single_email_names_the_lead() -> None:
    event = processed(WS, first_name="Jane", last_name="Doe", product="Solar")
    msg = render_email([_item(event)], sender="lw <n@x.test>", to="sales@x.test", now=NOW)
    assert msg["Subject"] == "[leadwire] New contact: Jane Doe (Solar)"
    assert msg["X-Leadwire-Event-Ids"] == str(event.event_id)
    body = msg.get_content()
    for expected in (
        "Jane Doe",
        "+16266633444",
        "benjie.malinao@example.com",
        "Solar",
        str(event.contact.id),
        str(event.event_id),
    ):
        assert expected in body


def test_digest_email_lists_every_notification() -> None:
    events: list[LeadProcessed | LeadFailed | PerformanceAlert] = [
        *(processed(WS, first_name=f"P{i}") for i in range(3)),
        failed(WS, error_type="MappingError"),
        alert(WS, value=0.25, threshold=0.1),
    ]
    items = [_item(e) for e in events[:3]] + [
        _item(events[3], ("processing_failed",)),
        _item(events[4], ("performance_alert",)),
    ]
    msg = render_email(items, sender="n@x.test", to="sales@x.test", now=NOW)
    assert msg["Subject"] == "[leadwire] 5 notifications for Acme"
    assert msg["X-Leadwire-Event-Ids"].split(",") == [str(e.event_id) for e in events]
    body = msg.get_content()
    assert "Lead processing failed: MappingError" in body
    assert "Performance alert firing: error_rate 0.25 (threshold 0.1)" in body
    for i in range(3):
        assert f"P{i} Malinao" in body


def test_sms_is_short_and_bounded() -> None:
    event = processed(WS, first_name="Jane", last_name="Doe")
    text = render_sms([_item(event, ("lead_created", "high_priority"))])
    assert text.startswith("leadwire: High-priority lead: Jane Doe (Solar) +16266633444")
    assert f"[ref {str(event.event_id)[:8]}]" in text
    many = render_sms([_item(processed(WS, first_name="x" * 500)) for _ in range(5)])
    assert len(many) <= SMS_MAX_CHARS


def test_realtime_message_and_notice() -> None:
    event = processed(WS, first_name="Jane")
    summary = summarize(event, workspace_name="Acme")
    name, data = realtime_message(summary, ["lead_created"])
    assert name == "lead"
    assert data["contact"]["first_name"] == "Jane" and data["kinds"] == ["lead_created"]
    assert "workspace_name" not in data
    assert realtime_message(summarize(alert(WS), workspace_name=None), [])[0] == "alert"
    send = NewSend(
        event_id=event.event_id,
        workspace_id=WS,
        channel="realtime",
        recipient=str(WS),
        kinds=["lead_created"],
        summary=summary,
        event_at=event.received_at,
    )
    assert len(realtime_notice(send, event=name, data=data)) < 7900
    # A huge summary is cut down to ids so pg_notify can carry it.
    big = {**data, "contact": {**data["contact"], "last_name": "y" * 9000}}
    slim = realtime_notice(send, event=name, data=big)
    assert len(slim.encode()) < 7900 and '"truncated":true' in slim


def test_a_health_alert_email_says_what_is_wrong_and_where_without_message_content() -> None:
    event = health_alert(service="processor", check="consumer", detail='{"stuck":[{"offset":7}]}')
    item = Item(
        summary=summarize(event, workspace_name="Acme", workspace_id=WS),
        kinds=("system_health",),
    )
    msg = render_email([item], sender="n@x.test", to="ops@x.test", now=NOW)
    assert msg["Subject"] == "[leadwire] System health alert firing: processor consumer"
    assert msg["X-Leadwire-Workspace"] == str(WS)
    body = msg.get_content()
    for expected in ('{"stuck":[{"offset":7}]}', "host-1:4242", event.since.isoformat()):
        assert expected in body
    resolved = health_alert(state="resolved", since=event.since)
    summary = summarize(resolved, workspace_name=None, workspace_id=WS)
    assert render_sms([Item(summary, ("system_health",))]).startswith(
        "leadwire: System health alert resolved: analytics consumer"
    )
    assert realtime_message(summary, ["system_health"])[0] == "system_health"
