"""The send ledger's records and what is made from them: the rows the consumer writes and
the dispatcher claims, the real-time push payload, the dead-letter entry. No I/O here
(the SQL is in :mod:`repository`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

# pg_notify channel carrying real-time pushes to every notifier instance.
REALTIME_CHANNEL = "leadwire_notifier_realtime"
# pg_notify payloads must stay under 8000 bytes.
_MAX_NOTIFY_BYTES = 7900
# What a real-time push keeps when its summary is too big for pg_notify.
_SLIM_KEYS = (
    "type",
    "event_id",
    "workspace_id",
    "webhook_id",
    "kinds",
    "lead_id",
    "action",
    "occurred_at",
)


@dataclass(frozen=True, slots=True)
class WorkspaceConfig:
    workspace_id: uuid.UUID
    name: str | None
    settings: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class NewSend:
    event_id: uuid.UUID
    workspace_id: uuid.UUID
    channel: str
    recipient: str
    kinds: Sequence[str]
    summary: dict[str, Any]
    event_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedSend:
    id: uuid.UUID
    event_id: uuid.UUID
    workspace_id: uuid.UUID
    channel: str
    recipient: str
    kinds: tuple[str, ...]
    summary: dict[str, Any]
    attempts: int
    event_at: datetime


@dataclass(frozen=True, slots=True)
class DeadSend:
    id: uuid.UUID
    event_id: uuid.UUID
    workspace_id: uuid.UUID
    channel: str
    recipient: str
    kinds: tuple[str, ...]
    attempts: int
    last_error: str | None
    claim_id: uuid.UUID | None


def token_hash(token: str) -> str:
    """How a real-time token is stored: hex sha256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def realtime_notice(send: NewSend, *, event: str, data: dict[str, Any]) -> str:
    """The pg_notify payload of one real-time push (ids only if the summary is too big)."""
    doc = {
        "workspace_id": str(send.workspace_id),
        "event": event,
        "data": data,
        "event_at": send.event_at.isoformat(),
    }
    text = orjson.dumps(doc, default=str).decode()
    if len(text.encode()) > _MAX_NOTIFY_BYTES:
        slim: dict[str, Any] = {k: data[k] for k in _SLIM_KEYS if k in data}
        if "contact" in data:
            slim["contact"] = {"id": data["contact"].get("id")}
        slim["truncated"] = True
        text = orjson.dumps({**doc, "data": slim}, default=str).decode()
    return text


def deadletter_entry(
    dead: Sequence[DeadSend], *, reason: str, failed_at: datetime
) -> dict[str, Any]:
    """One dead-letter entry for a batch that gave up: enough to re-drive it (the
    recipient is included for that, so the topic is as sensitive as the database), no
    message content."""
    first = dead[0]
    attempts = max(d.attempts for d in dead)
    kinds: dict[str, None] = {}
    for d in dead:
        kinds.update(dict.fromkeys(d.kinds))
    return {
        "deadletter_id": str(uuid.uuid4()),
        "reason": reason,
        "channel": first.channel,
        "workspace_id": str(first.workspace_id),
        "recipient": first.recipient,
        "event_ids": [str(d.event_id) for d in dead],
        "send_ids": [str(d.id) for d in dead],
        "kinds": list(kinds),
        "attempts": attempts,
        "retries": max(attempts - 1, 0),
        "last_error": (first.last_error or "")[:2000],
        "failed_at": failed_at.isoformat(),
    }


def interrupted_entries(dead: Sequence[DeadSend], *, failed_at: datetime) -> list[dict[str, Any]]:
    """Dead-letter entries for rows whose dispatcher died mid-send: one per former batch
    (same claim, workspace, channel and recipient)."""
    groups: dict[tuple[Any, ...], list[DeadSend]] = {}
    for d in dead:
        groups.setdefault((d.claim_id, d.workspace_id, d.channel, d.recipient), []).append(d)
    return [
        deadletter_entry(batch, reason="interrupted", failed_at=failed_at)
        for batch in groups.values()
    ]


#: The ``last_error`` of a row dead-lettered as interrupted.
INTERRUPTED = "interrupted: the notifier stopped during the send; delivery unknown"


def split_kinds(stored: str) -> tuple[str, ...]:
    """The kinds of a send row (stored comma-separated)."""
    return tuple(k for k in stored.split(",") if k)
