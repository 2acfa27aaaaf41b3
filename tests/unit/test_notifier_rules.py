"""Which events go where: rules, high-priority conditions, defaults (pure logic)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from services.notifier.rules import (
    HIGH_PRIORITY,
    Channel,
    Condition,
    EventKind,
    HighPriority,
    NotificationSettings,
    Rule,
    event_kinds,
    parse_condition,
    parse_settings,
    plan,
)
from tests.support.events import alert, failed, health_alert, processed

pytestmark = pytest.mark.unit

WS = uuid.uuid4()


def _settings(**kw: object) -> NotificationSettings:
    return NotificationSettings.model_validate(kw)


def test_event_kinds() -> None:
    assert event_kinds(processed(WS, action="created")) == [
        EventKind.CONTACT_CREATED,
        EventKind.LEAD_CREATED,
    ]
    assert event_kinds(processed(WS, action="updated")) == [
        EventKind.CONTACT_UPDATED,
        EventKind.LEAD_CREATED,
    ]
    assert event_kinds(failed(WS)) == [EventKind.PROCESSING_FAILED]
    assert event_kinds(alert(WS)) == [EventKind.PERFORMANCE_ALERT]
    assert event_kinds(health_alert()) == [EventKind.SYSTEM_HEALTH]


def test_a_health_alert_is_planned_in_the_workspace_it_is_delivered_to() -> None:
    settings = _settings(
        rules=[
            {"event": "system_health", "channel": "email", "recipients": ["ops@x.test"]},
            {"event": "system_health", "channel": "realtime"},
            {"event": "performance_alert", "channel": "email", "recipients": ["perf@x.test"]},
        ]
    )
    planned = plan(health_alert(), settings, WS)
    assert [(p.channel, p.recipient, p.kinds) for p in planned] == [
        (Channel.EMAIL, "ops@x.test", ["system_health"]),
        (Channel.REALTIME, str(WS), ["system_health"]),
    ]


def test_defaults_push_every_lead_in_realtime() -> None:
    settings, defaults = parse_settings(None)
    assert defaults
    planned = plan(processed(WS), settings)
    assert [(p.channel, p.recipient, p.kinds) for p in planned] == [
        (Channel.REALTIME, str(WS), ["lead_created"])
    ]
    assert plan(failed(WS), settings) == []


def test_explicit_empty_rules_mean_nothing() -> None:
    settings, defaults = parse_settings({"rules": []})
    assert not defaults
    assert plan(processed(WS), settings) == []


def test_one_notification_per_channel_and_recipient_with_every_kind() -> None:
    settings = _settings(
        rules=[
            {"event": "contact_created", "channel": "email", "recipients": ["A@x.com"]},
            {"event": "lead_created", "channel": "email", "recipients": ["a@x.com", "b@x.com"]},
        ]
    )
    planned = {(p.channel, p.recipient): p.kinds for p in plan(processed(WS), settings)}
    assert planned == {
        (Channel.EMAIL, "a@x.com"): ["contact_created", "lead_created"],
        (Channel.EMAIL, "b@x.com"): ["lead_created"],
    }
    # An update is not a creation: only the lead_created rule fires.
    planned = {
        (p.channel, p.recipient): p.kinds for p in plan(processed(WS, action="updated"), settings)
    }
    assert planned == {
        (Channel.EMAIL, "a@x.com"): ["lead_created"],
        (Channel.EMAIL, "b@x.com"): ["lead_created"],
    }


def test_high_priority_adds_sms_when_every_condition_holds() -> None:
    settings = _settings(
        rules=[],
        high_priority={
            "conditions": [
                {"field": "product", "op": "eq", "value": "solar"},
                {"field": "lead_status", "op": "in", "value": ["Hot", "new"]},
            ],
            "sms_recipients": ["+15551230000"],
        },
    )
    planned = plan(processed(WS, product=" SOLAR ", lead_status="NEW"), settings)
    assert [(p.channel, p.recipient, p.kinds) for p in planned] == [
        (Channel.SMS, "+15551230000", ["lead_created", HIGH_PRIORITY])
    ]
    assert plan(processed(WS, product="Wind"), settings) == []
    assert plan(processed(WS, product=None), settings) == []
    assert plan(failed(WS), settings) == []


def test_high_priority_on_custom_fields() -> None:
    hp = HighPriority(
        conditions=(Condition(field="budget", value="high"),), sms_recipients=("+15551230000",)
    )
    settings = NotificationSettings(high_priority=hp)
    assert plan(processed(WS, custom={"budget": "High"}), settings)
    assert not plan(processed(WS, custom={"budget": "low"}), settings)


def test_rejected_only_when_asked() -> None:
    settings = _settings(rules=[{"event": "lead_rejected", "channel": "realtime"}])
    assert Rule(event=EventKind.LEAD_REJECTED, channel=Channel.REALTIME) in settings.rules


def test_rule_validation() -> None:
    with pytest.raises(ValidationError):
        Rule(event=EventKind.LEAD_CREATED, channel=Channel.EMAIL)
    with pytest.raises(ValidationError):
        Rule(event=EventKind.LEAD_CREATED, channel=Channel.REALTIME, recipients=("a@x.com",))
    with pytest.raises(ValidationError):
        Rule.model_validate(
            {"event": "lead_exploded", "channel": "email", "recipients": ["a@x.com"]}
        )


def test_with_and_without_rule() -> None:
    s = NotificationSettings()
    s = s.with_rule(
        Rule(event=EventKind.LEAD_CREATED, channel=Channel.EMAIL, recipients=("a@x.com",))
    )
    s = s.with_rule(
        Rule(event=EventKind.LEAD_CREATED, channel=Channel.EMAIL, recipients=("b@x.com",))
    )
    assert [r.recipients for r in s.rules] == [("b@x.com",)]
    s, removed = s.without_rule(EventKind.LEAD_CREATED, Channel.EMAIL)
    assert removed and s.rules == ()
    _, removed = s.without_rule(EventKind.LEAD_CREATED, Channel.EMAIL)
    assert not removed
    assert parse_settings(s.to_json()) == (s, False)


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [("product=Solar", "eq", "Solar"), ("lead_status = hot, warm", "in", ("hot", "warm"))],
)
def test_parse_condition(text: str, op: str, value: object) -> None:
    c = parse_condition(text)
    assert (c.op, c.value) == (op, value)


@pytest.mark.parametrize("text", ["product", "=Solar", "product=", "product= , "])
def test_parse_condition_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_condition(text)
