"""The consumer side: turn a batch of outcome and alert events into durable send rows.

A system-health alert concerns the system, not one workspace: it goes to every workspace
whose rules ask for ``system_health`` (one row per workspace and recipient; two
workspaces naming the same email address send it once, see the send key below).

Delivery: the consumer runner commits the batch's offsets only after this handler
returns, and this handler returns only after the send rows of every event in the batch
are committed in Postgres (one transaction). So an event whose offset is committed can
no longer be lost: its notifications are rows the dispatcher will send, also after a
restart. Idempotent: rows are keyed by (event_id, channel, recipient) and inserted with
ON CONFLICT DO NOTHING, so a redelivered or replayed event adds nothing and pushes
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from services.notifier import metrics
from services.notifier.ledger import NewSend, WorkspaceConfig, realtime_notice
from services.notifier.render import event_time, realtime_message, summarize
from services.notifier.repository import Repository, Suppression
from services.notifier.rules import (
    Channel,
    EventKind,
    Notifiable,
    NotificationSettings,
    parse_settings,
    plan,
    workspace_of,
)
from shared.events import FLAG_SUPPRESSED, SystemHealthAlert, decode_with, utcnow
from shared.kafka import Message
from shared.logs import get_logger
from shared.suppression import Kind, recipient_hash

log = get_logger(__name__)

_notifiable: TypeAdapter[Notifiable] = TypeAdapter(
    Annotated[Notifiable, Field(discriminator="type")]
)


def decode_notifiable(data: bytes) -> Notifiable:
    """Decode a message of the outcome topic or the alert topic (by its ``type``)."""
    return decode_with(_notifiable, data)


def _settings_for(workspace_id: uuid.UUID, stored: dict[str, Any] | None) -> NotificationSettings:
    try:
        return parse_settings(stored)[0]
    except ValidationError as exc:
        # Written around the CLI (which validates): fall back to the defaults, say so.
        log.warning(
            "notification_settings_invalid",
            workspace_id=str(workspace_id),
            errors=exc.error_count(),
        )
        return parse_settings(None)[0]


async def handle_events(
    messages: list[Message[Notifiable]],
    *,
    repo: Repository,
    on_recorded: Callable[[], None],
    max_age_s: float,
) -> None:
    """Record the send rows (and real-time pushes) of a batch of events in one
    transaction; call ``on_recorded`` if there are new email/SMS rows to send. Events
    older than ``max_age_s`` are skipped (see the module docstring for why).

    An event goes to its workspace's rules; a system-health alert, which belongs to no
    workspace, to every workspace with a ``system_health`` rule."""
    events = [m.value for m in messages]
    owners = {ws for e in events if (ws := workspace_of(e)) is not None}
    configs = await repo.workspace_configs(list(owners))
    watching: dict[uuid.UUID, WorkspaceConfig] = {}
    if any(isinstance(e, SystemHealthAlert) for e in events):
        watching = await repo.workspaces_with_rule(EventKind.SYSTEM_HEALTH.value)
    cutoff = utcnow() - timedelta(seconds=max_age_s)
    sends: list[NewSend] = []
    notices: dict[tuple[uuid.UUID, str], str] = {}
    for event in events:
        if event.occurred_at < cutoff:
            # Past retention its send rows may be pruned: a replay could not be deduplicated.
            metrics.EVENTS.labels("too_old").inc()
            continue
        owner = workspace_of(event)
        targets: dict[uuid.UUID, WorkspaceConfig | None] = (
            {owner: configs.get(owner)} if owner is not None else {**watching}
        )
        planned = 0
        for workspace_id, config in targets.items():
            planned += _plan_sends(event, workspace_id, config, sends=sends, notices=notices)
        metrics.EVENTS.labels("planned" if planned else "no_rule").inc()
    sends = await _not_suppressed(repo, sends)
    new = await repo.record(sends, notices)
    log.debug("events_recorded", count=len(events), sends=len(sends), new_queued=new)
    if new:
        on_recorded()


def _plan_sends(
    event: Notifiable,
    workspace_id: uuid.UUID,
    config: WorkspaceConfig | None,
    *,
    sends: list[NewSend],
    notices: dict[tuple[uuid.UUID, str], str],
) -> int:
    """Add the sends (and real-time notices) of ``event`` in one workspace; how many."""
    settings = _settings_for(workspace_id, config.settings if config else None)
    planned = plan(event, settings, workspace_id)
    if not planned:
        return 0
    summary = summarize(
        event, workspace_name=config.name if config else None, workspace_id=workspace_id
    )
    for p in planned:
        if p.channel is Channel.SMS and FLAG_SUPPRESSED in getattr(event, "flags", ()):
            continue  # a flagged lead's phone or email is suppressed: never an SMS about it
        send = NewSend(
            event_id=event.event_id,
            workspace_id=workspace_id,
            channel=p.channel.value,
            recipient=p.recipient,
            kinds=p.kinds,
            summary=summary,
            event_at=event_time(event),
        )
        sends.append(send)
        if p.channel is Channel.REALTIME:
            name, data = realtime_message(summary, p.kinds)
            notices[(event.event_id, p.recipient)] = realtime_notice(send, event=name, data=data)
    return len(planned)


async def _not_suppressed(repo: Repository, sends: list[NewSend]) -> list[NewSend]:
    """The sends whose recipient is not on its workspace's suppression list: no email or
    SMS ever goes to a suppressed address or number."""
    keys: dict[int, Suppression] = {}
    for i, s in enumerate(sends):
        if s.channel in (Channel.EMAIL.value, Channel.SMS.value):
            kind: Kind = "email" if s.channel == Channel.EMAIL.value else "phone"
            digest = recipient_hash(kind, s.recipient)
            if digest is not None:
                keys[i] = (s.workspace_id, kind, digest)
    if not keys:
        return sends
    listed = await repo.suppressed(list(dict.fromkeys(keys.values())))
    if not listed:
        return sends
    kept = [s for i, s in enumerate(sends) if keys.get(i) not in listed]
    metrics.EVENTS.labels("recipient_suppressed").inc(len(sends) - len(kept))
    return kept
