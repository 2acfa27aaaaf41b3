"""What a notification says: the event summary stored with each send, the digest email,
the SMS text and the real-time message. Pure functions, no I/O.

The summary holds what the sales team needs to act (name, phone, email, product), so it
is PII: it lives in Postgres with the send row (pruned after the retention period) and in
the messages themselves, never in logs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from services.notifier.rules import HIGH_PRIORITY, EventKind, Notifiable
from shared.events import (
    LeadFailed,
    LeadProcessed,
    LeadRejected,
    PerformanceAlert,
    SystemHealthAlert,
)

# Twilio's limit for one message body.
SMS_MAX_CHARS = 1600


def summarize(
    event: Notifiable, *, workspace_name: str | None, workspace_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The JSON-able facts a notification about ``event`` shows (to ``workspace_id``, for
    a system-health alert, which belongs to no workspace)."""
    if isinstance(event, SystemHealthAlert):
        return {
            "type": event.type,
            "event_id": str(event.event_id),
            "workspace_id": str(workspace_id),
            "workspace_name": workspace_name,
            "occurred_at": event.occurred_at.isoformat(),
            "health": {
                "service": event.service,
                "check": event.check,
                "state": event.state,
                "detail": event.detail,
                "instance": event.instance,
                "since": event.since.isoformat(),
            },
        }
    base: dict[str, Any] = {
        "type": event.type,
        "event_id": str(event.event_id),
        "workspace_id": str(event.workspace_id),
        "workspace_name": workspace_name,
        "webhook_id": str(event.webhook_id),
        "occurred_at": event.occurred_at.isoformat(),
    }
    if isinstance(event, PerformanceAlert):
        base["alert"] = {
            "metric": event.metric,
            "value": event.value,
            "threshold": event.threshold,
            "state": event.state,
        }
        return base
    base["request_id"] = str(event.request_id)
    base["received_at"] = event.received_at.isoformat()
    if isinstance(event, LeadProcessed):
        base["lead_id"] = str(event.lead_id)
        base["action"] = event.action
        base["is_new_contact"] = event.is_new_contact
        base["match_type"] = event.match_type
        base["contact"] = event.contact.model_dump(mode="json")
    elif isinstance(event, LeadFailed):
        base["error"] = event.error.model_dump(mode="json")
    elif isinstance(event, LeadRejected):
        base["status_code"] = event.status_code
        base["reason"] = event.reason
    return base


def event_time(event: Notifiable) -> datetime:
    """When the lead was accepted (alerts: when they fired): the start of the delay metric."""
    if isinstance(event, PerformanceAlert | SystemHealthAlert):
        return event.occurred_at
    return event.received_at


@dataclass(frozen=True, slots=True)
class Item:
    """One notification of a batch: the stored summary and why it was sent."""

    summary: dict[str, Any]
    kinds: tuple[str, ...]


def _name(contact: dict[str, Any]) -> str:
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    return name or contact.get("email") or contact.get("phone") or "(no name)"


def headline(item: Item) -> str:
    s = item.summary
    kinds = set(item.kinds)
    if "contact" in s:
        who = _name(s["contact"])
        product = s["contact"].get("product")
        prefix = (
            "High-priority lead"
            if HIGH_PRIORITY in kinds
            else (
                "New contact"
                if EventKind.CONTACT_CREATED.value in kinds
                else "Contact updated"
                if EventKind.CONTACT_UPDATED.value in kinds
                else "New lead"
            )
        )
        return f"{prefix}: {who}" + (f" ({product})" if product else "")
    if "alert" in s:
        a = s["alert"]
        verb = "firing" if a["state"] == "firing" else "resolved"
        return (
            f"Performance alert {verb}: {a['metric']} {a['value']:g} (threshold {a['threshold']:g})"
        )
    if "health" in s:
        h = s["health"]
        verb = "firing" if h["state"] == "firing" else "resolved"
        return f"System health alert {verb}: {h['service']} {h['check']}"
    if "error" in s:
        return f"Lead processing failed: {s['error']['type']}"
    if "reason" in s:
        return f"Lead rejected ({s.get('status_code')}): {s['reason']}"
    return f"Notification: {s.get('type')}"


def _detail_lines(item: Item) -> list[str]:
    s = item.summary
    lines = [headline(item)]
    contact = s.get("contact")
    if contact:
        for label, key in (
            ("Name", None),
            ("Phone", "phone"),
            ("Email", "email"),
            ("Product", "product"),
            ("Status", "lead_status"),
            ("CRM id", "crm_id"),
            ("Board", "board_name"),
        ):
            value = _name(contact) if key is None else contact.get(key)
            if value:
                lines.append(f"  {label + ':':<10}{value}")
        lines.append(f"  {'Contact:':<10}{contact.get('id')}")
    if "alert" in s:
        lines.append(f"  {'Webhook:':<10}{s['webhook_id']}")
    if "health" in s:
        h = s["health"]
        lines.append(f"  {'Since:':<10}{h['since']}")
        if h.get("instance"):
            lines.append(f"  {'Where:':<10}{h['instance']}")
        if h.get("detail"):
            lines.append(f"  {'Detail:':<10}{h['detail']}")
    if "error" in s:
        lines.append(f"  {'Webhook:':<10}{s['webhook_id']}")
        lines.append(f"  {'Error:':<10}{s['error'].get('message', '')}")
    if "reason" in s:
        lines.append(f"  {'Webhook:':<10}{s['webhook_id']}")
    lines.append(f"  {'Events:':<10}{', '.join(item.kinds)}")
    lines.append(f"  {'At:':<10}{s.get('received_at') or s.get('occurred_at')}")
    lines.append(f"  {'Ref:':<10}{s['event_id']}")
    return lines


def render_email(items: Sequence[Item], *, sender: str, to: str, now: datetime) -> EmailMessage:
    """One email for a batch: the notification itself, or a digest of several."""
    assert items, "an email needs at least one notification"
    workspace = items[0].summary.get("workspace_name") or items[0].summary["workspace_id"]
    if len(items) == 1:
        subject = f"[leadwire] {headline(items[0])}"
    else:
        subject = f"[leadwire] {len(items)} notifications for {workspace}"
    parts = [f"leadwire notifications for workspace {workspace}", ""]
    for item in items:
        parts.extend(_detail_lines(item))
        parts.append("")
    parts.append("You receive this because your address is in this workspace's notification rules.")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain="leadwire.localhost")
    msg["X-Leadwire-Workspace"] = items[0].summary["workspace_id"]
    msg["X-Leadwire-Event-Ids"] = ",".join(i.summary["event_id"] for i in items)
    msg.set_content("\n".join(parts))
    return msg


def render_sms(items: Sequence[Item]) -> str:
    """One SMS for a batch, at most :data:`SMS_MAX_CHARS` characters."""
    assert items, "an SMS needs at least one notification"
    lines = []
    for item in items:
        s = item.summary
        text = headline(item)
        contact = s.get("contact") or {}
        extra = [v for v in (contact.get("phone"), contact.get("lead_status")) if v]
        if extra:
            text += " " + " ".join(extra)
        lines.append(f"{text} [ref {s['event_id'][:8]}]")
    head = "leadwire: " if len(items) == 1 else f"leadwire ({len(items)}):\n"
    body = head + "\n".join(lines)
    if len(body) > SMS_MAX_CHARS:
        body = body[: SMS_MAX_CHARS - 1] + "…"
    return body


# Real-time message name per kind of event.
REALTIME_EVENT = {
    "lead.processed": "lead",
    "lead.failed": "lead_failed",
    "lead.rejected": "lead_rejected",
    "alert.performance": "alert",
    "alert.system_health": "system_health",
}


def realtime_message(summary: dict[str, Any], kinds: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The Socket.IO event name and data pushed to a workspace's room."""
    data = {**summary, "kinds": list(kinds)}
    data.pop("workspace_name", None)
    return REALTIME_EVENT.get(summary["type"], "notification"), data
