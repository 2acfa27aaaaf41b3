"""Outcome events: built from a batch's decisions, stored verbatim with their request, and
published once per event id.

An outcome's event id is derived from its request id, and the JSON stored in
``webhook_requests.result`` is the exact message published. So a redelivered request
re-publishes its stored outcome byte for byte (:func:`republish`), and consumers dedupe on
the event id. :class:`OutcomePublisher` publishes each distinct outcome once and skips the
stored ones Kafka already acknowledged to this process.
"""

from __future__ import annotations

import uuid
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from services.processor import metrics
from services.processor.decode import Incoming
from services.processor.dedupe import MatchType
from services.processor.repository import StoredRequest
from shared import topics
from shared.events import (
    ContactSummary,
    ErrorInfo,
    FieldError,
    LeadFailed,
    LeadProcessed,
    LeadReceived,
    LeadRejected,
    MappedLead,
    Processing,
    RawRequest,
    outcome_event_id,
)
from shared.kafka import Message, PoisonMessage, Publisher


@dataclass
class Finished:
    """What one message came to: the outcome to publish, and whether it is poison."""

    message: Message[Incoming]
    event_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    status: str
    # The outcome event JSON exactly as stored; None when no outcome can be made.
    payload: bytes | None
    # True when this handler stored it; False when a stored outcome is re-published.
    fresh: bool
    # Dead-letter reason when the message is poison.
    poison: str | None = None
    match_type: str | None = None
    possible_duplicates: int = 0
    received_at: datetime | None = None


@dataclass
class Decided:
    """A lead decided in memory, waiting for the batch's writes before its outcome."""

    message: Message[Incoming]
    event: LeadReceived
    lead_id: uuid.UUID
    contact_summary: ContactSummary
    action: Literal["created", "updated"]
    match_type: MatchType
    is_new_contact: bool
    rule_applied: bool
    duplicates: list[uuid.UUID]
    # This lead's own time: dedupe and screening, and its board rules.
    decide_s: float
    rules_s: float = 0.0
    flags: list[str] = field(default_factory=list)


def dlq_reason(error: ErrorInfo) -> str:
    """The dead-letter reason, led by the same codes the consumer runner uses:
    ``unknown_version`` / ``undecodable`` for a message that breaks the schema,
    ``permanent`` for one Postgres refuses."""
    if error.type == "SchemaError":
        code = "unknown_version" if "schema_version" in error.message else "undecodable"
    else:
        code = "permanent"
    return f"{code}: {error.type}: {error.message}"


def dead_letter_only(message: Message[Incoming], error: ErrorInfo) -> Finished:
    """No outcome can be stored for it (nothing identifies the request, or Postgres refuses
    even its failure record): the dead-letter topic is the only place left for it."""
    return Finished(message, None, None, "failed", None, fresh=True, poison=dlq_reason(error))


def republish(
    message: Message[Incoming], stored: StoredRequest, workspace_id: uuid.UUID | None
) -> Finished:
    """A request already finished: publish its stored outcome again, create nothing.

    A stored failure is poison again, so a redelivered poison message still reaches the
    dead-letter topic (a crash may have come between recording and dead-lettering it)."""
    poison = None
    if stored.status == "failed" and stored.error is not None:
        poison = dlq_reason(
            ErrorInfo(type=str(stored.error.get("type")), message=str(stored.error.get("message")))
        )
    return Finished(
        message=message,
        event_id=outcome_event_id(stored.request_id),
        workspace_id=workspace_id,
        status=stored.status,
        payload=stored.result,
        fresh=False,
        poison=poison,
    )


# --- encoding -----------------------------------------------------------------------


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def outcome_json(event: BaseModel) -> str:
    """The outcome as stored and published. Postgres jsonb cannot hold NUL characters, so
    they are dropped (from the archived payload copy only; the lead itself never has one)."""
    text = event.model_dump_json()
    if "\\u0000" in text:
        text = (
            type(event).model_validate(_strip_nul(event.model_dump(mode="json"))).model_dump_json()
        )
    return text


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- building -----------------------------------------------------------------------


def _processing(received_at: datetime, now: datetime, steps: dict[str, float]) -> Processing:
    return Processing(
        start=received_at,
        end=now,
        duration_ms=ms(max((now - received_at).total_seconds(), 0.0)),
        steps=steps,
    )


def failed_event(
    *,
    request_id: uuid.UUID,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    received_at: datetime,
    request: RawRequest,
    lead: MappedLead | None,
    steps: dict[str, float],
    replay_of: uuid.UUID | None,
    error: ErrorInfo,
    now: datetime,
) -> LeadFailed:
    return LeadFailed(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        occurred_at=now,
        received_at=received_at,
        request=request,
        processing=_processing(received_at, now, steps),
        replay_of=replay_of,
        lead=lead,
        error=error,
    )


def failed(ev: LeadReceived, error: ErrorInfo, now: datetime) -> LeadFailed:
    """A received lead that can never be written."""
    return failed_event(
        request_id=ev.request_id,
        workspace_id=ev.workspace_id,
        webhook_id=ev.webhook_id,
        received_at=ev.received_at,
        request=ev.request,
        lead=ev.lead,
        steps=dict(ev.steps),
        replay_of=ev.replay_of,
        error=error,
        now=now,
    )


def rejected(
    ev: LeadReceived,
    *,
    request_id: uuid.UUID,
    reason: str,
    errors: list[FieldError],
    now: datetime,
    code: int = 409,
    steps: dict[str, float] | None = None,
) -> LeadRejected:
    """A received lead the processor refuses: its idempotency key is taken (a 409), it
    repeats a lead of its webhook's duplicate-lead window (409) or it is suppressed (422)."""
    return LeadRejected(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=ev.workspace_id,
        webhook_id=ev.webhook_id,
        occurred_at=now,
        received_at=ev.received_at,
        request=ev.request,
        processing=_processing(ev.received_at, now, {**ev.steps, **(steps or {})}),
        replay_of=ev.replay_of,
        status_code=code,
        reason=reason,
        errors=errors,
    )


def processed(item: Decided, steps: dict[str, float], end: datetime) -> LeadProcessed:
    """The outcome of a lead written with its contact."""
    ev = item.event
    # Built from parts that are validated already (the decoded event, our own summary):
    # construct without re-validating, the hot path's biggest saving.
    return LeadProcessed.model_construct(
        event_id=outcome_event_id(ev.request_id),
        request_id=ev.request_id,
        workspace_id=ev.workspace_id,
        webhook_id=ev.webhook_id,
        occurred_at=end,
        received_at=ev.received_at,
        request=ev.request,
        processing=Processing.model_construct(
            start=ev.received_at,
            end=end,
            duration_ms=ms(max((end - ev.received_at).total_seconds(), 0.0)),
            steps={**ev.steps, **steps},
        ),
        replay_of=ev.replay_of,
        lead=ev.lead,
        lead_id=item.lead_id,
        contact=item.contact_summary,
        action=item.action,
        match_type=item.match_type,
        is_new_contact=item.is_new_contact,
        rule_applied=item.rule_applied,
        possible_duplicates=item.duplicates,
        flags=item.flags,
    )


# --- publishing ---------------------------------------------------------------------


class PublishedIds:
    """Outcome ids this process has seen acknowledged by Kafka (bounded): a redelivery of
    one of them (a rebalance, a poison re-run) needs no second publish."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: uuid.UUID) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)


class OutcomePublisher:
    """Publishes a batch's outcomes to the outcome topic (keyed by workspace)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._published = PublishedIds()

    async def publish(self, finished: Sequence[Finished]) -> None:
        """Publish each distinct outcome once; Kafka down raises and the runner retries the
        batch, which re-publishes the stored outcomes."""
        items: list[tuple[str | None, bytes]] = []
        ids: list[uuid.UUID] = []
        seen: set[uuid.UUID] = set()
        for f in finished:
            if f.payload is None or f.event_id is None or f.event_id in seen:
                continue
            seen.add(f.event_id)
            if not f.fresh and f.event_id in self._published:
                continue
            items.append((str(f.workspace_id) if f.workspace_id else None, f.payload))
            ids.append(f.event_id)
        await self._publisher.publish_many(topics.OUTCOMES, items)
        for event_id in ids:
            self._published.add(event_id)


def raise_poison(finished: Sequence[Finished]) -> None:
    """Hand the first poison message to the runner, which dead-letters it (the rest of the
    batch is done: a redelivery re-publishes their stored outcomes)."""
    for f in finished:
        if f.poison is not None:
            metrics.POISON.labels(f.poison.split(":", 1)[0][:40]).inc()
            raise PoisonMessage(f.message, f.poison)


def count(
    finished: Sequence[Finished],
    *,
    started: float,
    committed: float,
    published: float,
    committed_at: datetime,
) -> None:
    """The batch's metrics (times from ``time.perf_counter``)."""
    metrics.BATCH_LEADS.observe(len(finished))
    metrics.STEP_SECONDS.labels("publish").observe(published - committed)
    metrics.STEP_SECONDS.labels("batch").observe(published - started)
    statuses: Counter[str] = Counter()
    matches: Counter[str] = Counter()
    republished = duplicates = 0
    for f in finished:
        if not f.fresh:
            republished += 1
            continue
        statuses[f.status] += 1
        if f.match_type is not None:
            matches[f.match_type] += 1
        duplicates += f.possible_duplicates
        if f.status == "processed" and f.received_at is not None:
            metrics.ACCEPT_TO_COMMIT.observe(
                max((committed_at - f.received_at).total_seconds(), 0.0)
            )
    for status, n in statuses.items():
        metrics.OUTCOMES.labels(status).inc(n)
    for match, n in matches.items():
        metrics.MATCHES.labels(match).inc(n)
    if republished:
        metrics.REPUBLISHED.inc(republished)
    if duplicates:
        metrics.POSSIBLE_DUPLICATES.inc(duplicates)
