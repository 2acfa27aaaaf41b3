"""The consumer side: turn a batch of outcome and alert events into durable send rows.

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
from services.notifier.ledger import NewSend, realtime_notice
from services.notifier.render import event_time, realtime_message, summarize
from services.notifier.repository import Repository
from services.notifier.rules import Channel, Notifiable, NotificationSettings, parse_settings, plan
from shared.events import utcnow
from shared.kafka import Message
from shared.logs import get_logger

log = get_logger(__name__)

_notifiable: TypeAdapter[Notifiable] = TypeAdapter(
    Annotated[Notifiable, Field(discriminator="type")]
)


def decode_notifiable(data: bytes) -> Notifiable:
    """Decode a message of the outcome topic or the alert topic (by its ``type``)."""
    return _notifiable.validate_json(data)


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
    older than ``max_age_s`` are skipped (see the module docstring for why)."""
    events = [m.value for m in messages]
    configs = await repo.workspace_configs(list({e.workspace_id for e in events}))
    cutoff = utcnow() - timedelta(seconds=max_age_s)
    sends: list[NewSend] = []
    notices: dict[tuple[uuid.UUID, str], str] = {}
    for event in events:
        if event.occurred_at < cutoff:
            # Past retention its send rows may be pruned: a replay could not be deduplicated.
            metrics.EVENTS.labels("too_old").inc()
            continue
        config = configs.get(event.workspace_id)
        settings = _settings_for(event.workspace_id, config.settings if config else None)
        planned = plan(event, settings)
        if not planned:
            metrics.EVENTS.labels("no_rule").inc()
            continue
        metrics.EVENTS.labels("planned").inc()
        summary = summarize(event, workspace_name=config.name if config else None)
        for p in planned:
            send = NewSend(
                event_id=event.event_id,
                workspace_id=event.workspace_id,
                channel=p.channel.value,
                recipient=p.recipient,
                kinds=p.kinds,
                summary=summary,
                event_at=event_time(event),
            )
            sends.append(send)
            if p.channel is Channel.REALTIME:
                name, data = realtime_message(summary, p.kinds)
                notices[(event.event_id, p.recipient)] = realtime_notice(
                    send, event=name, data=data
                )
    new = await repo.record(sends, notices)
    log.debug("events_recorded", count=len(events), sends=len(sends), new_queued=new)
    if new:
        on_recorded()
