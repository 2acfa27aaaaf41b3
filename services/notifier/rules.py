"""Who gets told about what: the per-workspace notification settings and the pure logic
that turns one event into the notifications it should produce. No I/O here.

A workspace's settings (``notification_settings.settings``)::

    {"rules": [{"event": "lead_created", "channel": "email", "recipients": ["a@x.com"]},
               {"event": "lead_created", "channel": "realtime", "recipients": []}],
     "high_priority": {"conditions": [{"field": "product", "op": "eq", "value": "Solar"}],
                       "sms_recipients": ["+15551234567"]}}

A workspace without stored rules gets :data:`DEFAULT_RULES` (real-time push of every lead).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events import (
    LeadFailed,
    LeadProcessed,
    LeadRejected,
    PerformanceAlert,
    SystemHealthAlert,
)

Notifiable = LeadProcessed | LeadFailed | LeadRejected | PerformanceAlert | SystemHealthAlert


class EventKind(StrEnum):
    CONTACT_CREATED = "contact_created"
    CONTACT_UPDATED = "contact_updated"
    LEAD_CREATED = "lead_created"
    PROCESSING_FAILED = "processing_failed"
    PERFORMANCE_ALERT = "performance_alert"
    # A part of the system is stuck or behind (or recovered). It concerns no one
    # workspace: every workspace with a rule for it is told.
    SYSTEM_HEALTH = "system_health"
    # Only when a rule asks for it: the gateway refused the request.
    LEAD_REJECTED = "lead_rejected"


class Channel(StrEnum):
    REALTIME = "realtime"
    EMAIL = "email"
    SMS = "sms"


# The kind a high-priority SMS carries (besides the event's own kinds).
HIGH_PRIORITY = "high_priority"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Rule(_Model):
    event: EventKind
    channel: Channel
    # Emails (email), E.164 phones (sms); empty for realtime (the workspace's room).
    recipients: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _recipients_fit_channel(self) -> Rule:
        if self.channel is Channel.REALTIME and self.recipients:
            raise ValueError("a realtime rule has no recipients (it goes to the workspace's room)")
        if self.channel is not Channel.REALTIME and not self.recipients:
            raise ValueError(f"an {self.channel.value} rule needs at least one recipient")
        return self


class Condition(_Model):
    field: str = Field(min_length=1)
    op: Literal["eq", "in"] = "eq"
    value: str | tuple[str, ...]

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op == "in" and isinstance(self.value, str):
            object.__setattr__(self, "value", (self.value,))
        if self.op == "eq" and not isinstance(self.value, str):
            raise ValueError("op 'eq' takes one value; use 'in' for several")
        return self

    def matches(self, actual: Any) -> bool:
        """Case-insensitive, whitespace-trimmed comparison; a missing field never matches."""
        if actual is None:
            return False
        have = _fold(actual)
        if self.op == "eq":
            assert isinstance(self.value, str)
            return have == _fold(self.value)
        return have in {_fold(v) for v in self.value}


class HighPriority(_Model):
    # Every condition must hold (AND).
    conditions: tuple[Condition, ...] = Field(min_length=1)
    sms_recipients: tuple[str, ...] = Field(min_length=1)


class NotificationSettings(_Model):
    rules: tuple[Rule, ...] = ()
    high_priority: HighPriority | None = None

    def with_rule(self, rule: Rule) -> NotificationSettings:
        """Set the rule for (event, channel), replacing its recipients if it exists."""
        kept = [r for r in self.rules if (r.event, r.channel) != (rule.event, rule.channel)]
        return self.model_copy(update={"rules": (*kept, rule)})

    def without_rule(self, event: EventKind, channel: Channel) -> tuple[NotificationSettings, bool]:
        kept = tuple(r for r in self.rules if (r.event, r.channel) != (event, channel))
        return self.model_copy(update={"rules": kept}), len(kept) != len(self.rules)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


DEFAULT_RULES: tuple[Rule, ...] = (Rule(event=EventKind.LEAD_CREATED, channel=Channel.REALTIME),)


def parse_settings(stored: dict[str, Any] | None) -> tuple[NotificationSettings, bool]:
    """The stored settings, or the defaults; the flag says whether defaults were used."""
    stored = stored or {}
    if "rules" not in stored:
        return (
            NotificationSettings(rules=DEFAULT_RULES, high_priority=stored.get("high_priority")),
            True,
        )
    return NotificationSettings.model_validate(stored), False


def _fold(value: Any) -> str:
    return str(value).strip().casefold()


def event_kinds(event: Notifiable) -> list[EventKind]:
    """The kinds of notification an event can trigger, most specific first."""
    if isinstance(event, LeadProcessed):
        first = (
            EventKind.CONTACT_CREATED if event.action == "created" else EventKind.CONTACT_UPDATED
        )
        return [first, EventKind.LEAD_CREATED]
    if isinstance(event, LeadFailed):
        return [EventKind.PROCESSING_FAILED]
    if isinstance(event, LeadRejected):
        return [EventKind.LEAD_REJECTED]
    if isinstance(event, SystemHealthAlert):
        return [EventKind.SYSTEM_HEALTH]
    return [EventKind.PERFORMANCE_ALERT]


def workspace_of(event: Notifiable) -> uuid.UUID | None:
    """The workspace an event belongs to; None for a system-health alert (it goes to
    every workspace with a ``system_health`` rule)."""
    return None if isinstance(event, SystemHealthAlert) else event.workspace_id


def is_high_priority(event: Notifiable, rule: HighPriority) -> bool:
    """Every condition holds on the lead's mapped fields (the contact's as a fallback)."""
    if not isinstance(event, LeadProcessed):
        return False
    for condition in rule.conditions:
        actual = event.lead.field(condition.field)
        if actual is None and condition.field in type(event.contact).model_fields:
            actual = getattr(event.contact, condition.field)
        if not condition.matches(actual):
            return False
    return True


@dataclass
class Planned:
    """One notification to make: an event, through a channel, to one recipient."""

    channel: Channel
    recipient: str
    kinds: list[str] = field(default_factory=list)


def plan(
    event: Notifiable, settings: NotificationSettings, workspace_id: uuid.UUID | None = None
) -> list[Planned]:
    """Every (channel, recipient) this event goes to in a workspace (the event's own, or
    ``workspace_id`` for a system-health alert), with the kinds that put it there.

    Several rules naming the same recipient on the same channel make ONE notification
    (the send key is (event, channel, recipient)); its kinds list every reason.
    """
    room = workspace_id or workspace_of(event)
    kinds = event_kinds(event)
    out: dict[tuple[Channel, str], Planned] = {}

    def add(channel: Channel, recipient: str, kind: str) -> None:
        item = out.setdefault((channel, recipient), Planned(channel, recipient))
        if kind not in item.kinds:
            item.kinds.append(kind)

    for kind in kinds:
        for rule in settings.rules:
            if rule.event is not kind:
                continue
            if rule.channel is Channel.REALTIME:
                if room is not None:
                    add(Channel.REALTIME, str(room), kind.value)
            else:
                for recipient in _unique(rule.recipients):
                    add(rule.channel, recipient, kind.value)
    hp = settings.high_priority
    if hp is not None and is_high_priority(event, hp):
        for phone in _unique(hp.sms_recipients):
            add(Channel.SMS, phone, HIGH_PRIORITY)
            item = out[(Channel.SMS, phone)]
            if EventKind.LEAD_CREATED.value not in item.kinds:
                item.kinds.insert(0, EventKind.LEAD_CREATED.value)
    return list(out.values())


def _unique(recipients: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for r in recipients:
        key = r.strip().lower()
        if key:
            seen.setdefault(key, None)
    return list(seen)


def parse_condition(text: str) -> Condition:
    """``field=value`` (eq) or ``field=a,b`` (in), as the CLI's ``--when`` takes it."""
    name, sep, value = text.partition("=")
    values = [v.strip() for v in value.split(",") if v.strip()]
    name = name.strip()
    if not sep or not name or not values:
        raise ValueError(f"condition {text!r} is not field=value (e.g. product=Solar)")
    if len(values) > 1:
        return Condition(field=name, op="in", value=tuple(values))
    return Condition(field=name, op="eq", value=values[0])
