"""Pure: what analytics reads from a dead-letter entry, and when dead letters make a
system-health alert. No I/O here (the SQL is in :mod:`deadletter_repository`).

Analytics consumes the consumers' dead-letter topic (``<prefix>deadletter``, entries made
by :mod:`shared.kafka.deadletter`) to count dead letters per webhook and workspace. A dead
letter's identity is the topic, partition and offset of the dead-letter message itself:
a redelivered or replayed dead letter is counted once.

:func:`read_entry` never fails: whatever the bytes, it gives a row that can be stored
(ids that are not UUIDs are left out, text is cut short and stripped of NUL). It must
not fail, because a message this consumer could not handle would be dead-lettered onto
the very topic it reads.

The dead-letter growth alert (:func:`decide_growth`): new dead letters within the window
(at least ``min_count``) fire it; a whole window without any resolves it. One event per
crossing, the id derived from when it fired (:func:`~shared.events.health_event_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from shared.events import SystemHealthAlert, health_event_id

SERVICE = "analytics"
GROWTH_CHECK = "deadletter_growth"
_MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One dead letter as analytics counts it."""

    topic: str
    partition: int
    offset: int
    source_topic: str
    reason_code: str
    group_id: str | None
    workspace_id: uuid.UUID | None
    webhook_id: uuid.UUID | None
    failed_at: datetime


def _text(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value:
        return default
    return value.replace("\x00", "")[:_MAX_TEXT] or default


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _when(value: Any, fallback_ms: int) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(max(fallback_ms, 0) / 1000, UTC)


def decode_deadletter(data: bytes | None) -> bytes:
    """The consumer runner's decoder for the dead-letter topic: the bytes as they are
    (read by :func:`read_entry` with the message's position; never raises)."""
    return data or b""


def read_entry(
    raw: bytes, *, topic: str, partition: int, offset: int, timestamp_ms: int
) -> DeadLetterRow:
    """The row of one dead-letter message (see the module docstring: never raises)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    doc: Mapping[str, Any] = value if isinstance(value, dict) else {}
    return DeadLetterRow(
        topic=topic,
        partition=partition,
        offset=offset,
        source_topic=_text(doc.get("source_topic"), "unknown"),
        reason_code=_text(doc.get("reason_code"), "unreadable" if not doc else "unknown")[:40],
        group_id=_text(doc.get("group_id"), "") or None,
        workspace_id=_uuid(doc.get("workspace_id")),
        webhook_id=_uuid(doc.get("webhook_id")),
        failed_at=_when(doc.get("failed_at"), timestamp_ms),
    )


@dataclass(frozen=True)
class GrowthState:
    """The growth alert's stored state: firing or not, since when (the crossing), what
    it said, and whether its last transition was published."""

    firing: bool = False
    since: datetime | None = None
    detail: str = ""
    changed_at: datetime | None = None
    published: bool = True


#: Decides the growth alert's next state from the stored one and the recent counts.
DecideGrowth = Callable[[GrowthState, dict[str, int]], GrowthState | None]


def decide_growth(
    state: GrowthState,
    recent: Mapping[str, int],
    *,
    now: datetime,
    window_minutes: float,
    min_count: int,
) -> GrowthState | None:
    """The new state after looking at ``recent`` (dead letters per reason code within
    the window), or None when it stays as it is."""
    total = sum(recent.values())
    if not state.firing and total >= min_count:
        reasons = ", ".join(f"{code}: {n}" for code, n in sorted(recent.items()))
        detail = f"{total} new dead letter(s) in the last {window_minutes:g} min ({reasons})"
        return GrowthState(firing=True, since=now, detail=detail, changed_at=now, published=False)
    if state.firing and total == 0:
        detail = f"no new dead letter for {window_minutes:g} min"
        return GrowthState(
            firing=False, since=state.since, detail=detail, changed_at=now, published=False
        )
    return None


def growth_event(state: GrowthState) -> SystemHealthAlert:
    """The alert event of the state's last transition (the same id every time)."""
    assert state.since is not None and state.changed_at is not None
    label: Literal["firing", "resolved"] = "firing" if state.firing else "resolved"
    return SystemHealthAlert(
        event_id=health_event_id(SERVICE, GROWTH_CHECK, state.since, label),
        service=SERVICE,
        check=GROWTH_CHECK,
        state=label,
        detail=state.detail,
        since=state.since,
        occurred_at=state.changed_at,
    )
