"""Turning a batch of received leads into contacts, leads, board assignments and outcomes.

Exactly once in effect, on an at-least-once consumer:

- Idempotency: the ``webhook_requests`` row of a request is written in the same
  transaction as its lead and contact (the "tracking record"). A message whose request is
  already stored creates nothing and re-publishes the stored outcome verbatim (its event id
  is derived from the request id), so redelivery, replay from offset 0 and a crash between
  commit and publish all end with exactly one lead and one distinct outcome per request.
- Concurrency: each transaction first takes advisory locks on every identity key of its
  leads (workspace + key type + value), in sorted order, then row-locks the contacts those
  keys reach. Two processors never decide about one identity at once and never deadlock;
  the unique indexes are the backstop, and a unique violation, serialization failure or
  deadlock retries the whole transaction (it is never surfaced).
- Poison: a message that can never be written (undecodable, unknown webhook, a value the
  schema refuses) is recorded as a failed request with a ``LeadFailed`` outcome, then
  raised as :class:`PoisonMessage` so the runner dead-letters it. One such message does not
  fail its batch: the batch is re-run one message per transaction.
- Order: commit, then publish the outcomes, then (the runner) commit the offsets.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from services.processor import metrics, repository
from services.processor.dedupe import IdentityIndex, MatchType, identity_keys
from services.processor.rules import first_match
from services.processor.settings import ProcessorSettings
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
    decode_raw,
    outcome_event_id,
    request_id_for,
    utcnow,
)
from shared.kafka import Message, PoisonMessage, Publisher
from shared.logs import get_logger

log = get_logger(__name__)


# --- decoding -----------------------------------------------------------------------


@dataclass(frozen=True)
class Undecodable:
    """A raw message that is not a valid LeadReceived, with what could be read of it."""

    error: str
    fields: dict[str, Any]


Incoming = LeadReceived | Undecodable


def decode_message(data: bytes) -> Incoming:
    """Decode a raw-topic message; never raises, so a schema error can still be recorded
    as a failed outcome (when its ids are readable) before it is dead-lettered."""
    try:
        return decode_raw(data)
    except ValidationError as exc:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        return Undecodable(
            error=schema_error(exc), fields=parsed if isinstance(parsed, dict) else {}
        )


def schema_error(exc: ValidationError) -> str:
    """Where and how the event breaks the schema, never the values (they may be PII)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
        for err in exc.errors(include_input=False, include_url=False)[:10]
    ]
    return "schema: " + "; ".join(parts)


# --- results ------------------------------------------------------------------------


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


class Unwritable(Exception):
    """Postgres refused data for good (a constraint, a type, a size): not a transient error."""

    def __init__(self, error: asyncpg.PostgresError) -> None:
        super().__init__(str(error))
        self.error = error


class TransactionConflict(Exception):
    """Lock conflicts kept coming back; the runner retries the batch after a backoff."""


_RETRYABLE = (
    asyncpg.UniqueViolationError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
)
_UNWRITABLE = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


def is_unwritable(exc: BaseException) -> bool:
    return isinstance(exc, _UNWRITABLE) and not isinstance(exc, _RETRYABLE)


def error_info(exc: asyncpg.PostgresError) -> ErrorInfo:
    """The error without PII: class, SQLSTATE, and which constraint/column, never values."""
    where = (
        getattr(exc, "constraint_name", None)
        or getattr(exc, "column_name", None)
        or getattr(exc, "table_name", None)
    )
    message = f"SQLSTATE {exc.sqlstate}" + (f" on {where}" if where else "")
    return ErrorInfo(type=type(exc).__name__, message=message)


def _dlq_reason(error: ErrorInfo) -> str:
    return f"{error.type}: {error.message}"


# --- outcome encoding ----------------------------------------------------------------


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


def json_text(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # integers beyond 64 bits: the stdlib encoder takes them
        return json.dumps(value, default=str, ensure_ascii=False)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- one transaction ----------------------------------------------------------------


@dataclass
class _Pending:
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
    decide_s: float


@dataclass
class _Batch:
    """The working state of one transaction."""

    stored: dict[uuid.UUID, repository.StoredRequest] = field(default_factory=dict)
    rows: list[repository.RequestRow] = field(default_factory=list)
    finished: list[Finished | _Pending] = field(default_factory=list)


def _placeholder_request() -> RawRequest:
    return RawRequest(path="", headers={}, content_type="", payload=None)


def _parse_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def _failed_event(
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
        processing=Processing(
            start=received_at,
            end=now,
            duration_ms=_ms(max((now - received_at).total_seconds(), 0.0)),
            steps=steps,
        ),
        replay_of=replay_of,
        lead=lead,
        error=error,
    )


def _store(
    batch: _Batch,
    message: Message[Incoming],
    *,
    event: LeadProcessed | LeadFailed | LeadRejected,
    status: str,
    idempotency_key: str | None,
    body_sha256: str | None,
    poison: str | None = None,
    match_type: str | None = None,
    possible_duplicates: int = 0,
) -> Finished:
    text = outcome_json(event)
    error = event.error.model_dump() if isinstance(event, LeadFailed) else None
    if isinstance(event, LeadRejected):
        error = {"type": event.reason, "message": f"status {event.status_code}"}
    batch.rows.append(
        repository.RequestRow(
            request_id=event.request_id,
            workspace_id=event.workspace_id,
            webhook_id=event.webhook_id,
            status=status,
            received_at=event.received_at,
            processed_at=event.processing.end,
            idempotency_key=idempotency_key,
            body_sha256=body_sha256,
            replay_of=event.replay_of,
            result=text,
            steps=event.processing.steps,
            error=error,
        )
    )
    payload = text.encode()
    batch.stored[event.request_id] = repository.StoredRequest(
        request_id=event.request_id,
        status=status,
        body_sha256=body_sha256,
        result=payload,
        error=error,
    )
    return Finished(
        message=message,
        event_id=event.event_id,
        workspace_id=event.workspace_id,
        status=status,
        payload=payload,
        fresh=True,
        poison=poison,
        match_type=match_type,
        possible_duplicates=possible_duplicates,
        received_at=event.received_at,
    )


def _republish(
    message: Message[Incoming], stored: repository.StoredRequest, workspace_id: uuid.UUID | None
) -> Finished:
    """A request already finished: publish its stored outcome again, create nothing.

    A stored failure is poison again, so a redelivered poison message still reaches the
    dead-letter topic (a crash may have come between recording and dead-lettering it)."""
    poison = None
    if stored.status == "failed" and stored.error is not None:
        poison = f"{stored.error.get('type')}: {stored.error.get('message')}"
    return Finished(
        message=message,
        event_id=outcome_event_id(stored.request_id),
        workspace_id=workspace_id,
        status=stored.status,
        payload=stored.result,
        fresh=False,
        poison=poison,
    )


def _undecodable(
    batch: _Batch, message: Message[Incoming], bad: Undecodable, now: datetime
) -> Finished:
    fields = bad.fields
    request_id = _parse_uuid(fields.get("request_id"))
    workspace_id = _parse_uuid(fields.get("workspace_id"))
    webhook_id = _parse_uuid(fields.get("webhook_id"))
    if request_id is None or workspace_id is None or webhook_id is None:
        # Nothing identifies the request: there is no outcome to give, only the dead letter.
        return Finished(
            message,
            None,
            None,
            "failed",
            None,
            fresh=True,
            poison=_dlq_reason(ErrorInfo(type="SchemaError", message=bad.error[:500])),
        )
    if request_id in batch.stored:
        return _republish(message, batch.stored[request_id], workspace_id)
    try:
        received_at = datetime.fromisoformat(str(fields.get("received_at")))
        if received_at.tzinfo is None:
            received_at = now
    except ValueError:
        received_at = now
    try:
        request = RawRequest.model_validate(fields.get("request"))
    except ValidationError:
        request = _placeholder_request()
    try:
        lead: MappedLead | None = MappedLead.model_validate(fields.get("lead"))
    except ValidationError:
        lead = None
    error = ErrorInfo(type="SchemaError", message=bad.error[:500])
    event = _failed_event(
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at,
        request=request,
        lead=lead,
        steps={},
        replay_of=_parse_uuid(fields.get("replay_of")),
        error=error,
        now=now,
    )
    key = fields.get("idempotency_key")
    body = fields.get("body_sha256")
    return _store(
        batch,
        message,
        event=event,
        status="failed",
        idempotency_key=key if isinstance(key, str) else None,
        body_sha256=body if isinstance(body, str) else None,
        poison=_dlq_reason(error),
    )


def lock_keys_of(messages: Sequence[Message[Incoming]]) -> list[int]:
    """Advisory lock keys: each lead's identity keys; a lead without one locks its request."""
    keys: list[int] = []
    for m in messages:
        value = m.value
        if isinstance(value, Undecodable):
            rid = _parse_uuid(value.fields.get("request_id"))
            if rid is not None:
                keys.append(repository.lock_key("request", rid))
            continue
        ids = identity_keys(value.lead)
        if not ids:
            keys.append(repository.lock_key("request", value.request_id))
        for kind, key in ids.items():
            keys.append(repository.lock_key(value.workspace_id, kind, key))
    return keys


def conflict_request_id(event: LeadReceived) -> uuid.UUID:
    """The request id of "this key came back with another body": deterministic, so a
    redelivered conflicting message is recognised and rejected only once."""
    return request_id_for(event.webhook_id, f"{event.idempotency_key}#{event.body_sha256}")


async def process_batch(
    messages: Sequence[Message[Incoming]],
    *,
    conn: repository.Connection,
    clock: Callable[[], datetime] = utcnow,
    hold_s: float = 0.0,
) -> list[Finished]:
    """Everything one transaction does for a batch; the caller owns the transaction."""
    t0 = time.perf_counter()
    await repository.lock_identities(conn, lock_keys_of(messages))

    events = [m.value for m in messages if isinstance(m.value, LeadReceived)]
    lookup_ids: list[uuid.UUID] = []
    for m in messages:
        if isinstance(m.value, LeadReceived):
            lookup_ids.append(m.value.request_id)
            if m.value.idempotency_key is not None:
                lookup_ids.append(conflict_request_id(m.value))
        else:
            rid = _parse_uuid(m.value.fields.get("request_id"))
            if rid is not None:
                lookup_ids.append(rid)
    view = await repository.load_batch(
        conn,
        request_ids=lookup_ids,
        webhook_ids=[e.webhook_id for e in events],
        idempotency=[
            (e.webhook_id, e.idempotency_key) for e in events if e.idempotency_key is not None
        ],
        keys=list(
            dict.fromkeys(
                (e.workspace_id, kind, value)
                for e in events
                for kind, value in identity_keys(e.lead).items()
            )
        ),
        workspace_ids=[e.workspace_id for e in events],
    )
    batch = _Batch(stored=view.stored)
    webhooks, idem_holders, rules = view.webhooks, view.idempotency_holders, view.rules
    index = IdentityIndex(view.contacts)
    t_lookup = time.perf_counter() - t0
    t_rules = 0.0

    now = clock()
    leads: list[repository.LeadRow] = []
    pairs: list[repository.DuplicatePair] = []
    for m in messages:
        value = m.value
        if isinstance(value, Undecodable):
            batch.finished.append(_undecodable(batch, m, value, now))
            continue
        ev = value
        stored = batch.stored.get(ev.request_id)
        if stored is not None:
            if (
                ev.idempotency_key is not None
                and stored.body_sha256 is not None
                and stored.body_sha256 != ev.body_sha256
            ):
                batch.finished.append(_conflict(batch, m, ev, now))
            else:
                batch.finished.append(_republish(m, stored, ev.workspace_id))
            continue
        if webhooks.get(ev.webhook_id) != ev.workspace_id:
            error = ErrorInfo(
                type="UnknownWebhook",
                message="webhook not found"
                if ev.webhook_id not in webhooks
                else "webhook belongs to another workspace",
            )
            batch.finished.append(_fail(batch, m, ev, error, now))
            continue
        holder = (
            idem_holders.get((ev.webhook_id, ev.idempotency_key))
            if ev.idempotency_key is not None
            else None
        )
        if holder is not None and holder != ev.request_id:
            batch.finished.append(_duplicate_key(batch, m, ev, holder, now))
            continue

        td = time.perf_counter()
        decision = index.apply(ev.workspace_id, ev.lead)
        contact = decision.contact
        tr = time.perf_counter()
        rule = first_match(rules.get(ev.workspace_id, ()), ev.webhook_id, ev.lead)
        t_rules += time.perf_counter() - tr
        if rule is not None and (
            contact.board_id != rule.board_id or contact.board_name != rule.board_name
        ):
            contact.board_id = rule.board_id
            contact.board_name = rule.board_name
            contact.dirty = True
        lead_id = uuid.uuid4()
        leads.append(
            repository.LeadRow(
                id=lead_id,
                workspace_id=ev.workspace_id,
                contact_id=contact.id,
                webhook_id=ev.webhook_id,
                request_id=ev.request_id,
                idempotency_key=ev.idempotency_key,
                source=ev.source,
                status=ev.lead.lead_status,
                product_interest=ev.lead.product,
                replay_of=ev.replay_of,
            )
        )
        for dup in decision.duplicates:
            pairs.append(
                repository.DuplicatePair(
                    workspace_id=ev.workspace_id,
                    contact_id=contact.id,
                    other_contact_id=dup.other_contact_id,
                    key_type=dup.key_type,
                    request_id=ev.request_id,
                )
            )
        # Mark the request as taken within the batch: a second copy of it (or of its
        # idempotency key with another body) later in this batch sees it.
        batch.stored[ev.request_id] = repository.StoredRequest(
            request_id=ev.request_id,
            status="processed",
            body_sha256=ev.body_sha256,
            result=None,
            error=None,
        )
        batch.finished.append(
            _Pending(
                message=m,
                event=ev,
                lead_id=lead_id,
                contact_summary=contact.summary(),
                action="created" if decision.is_new_contact else "updated",
                match_type=decision.match_type,
                is_new_contact=decision.is_new_contact,
                rule_applied=rule is not None,
                duplicates=list(dict.fromkeys(d.other_contact_id for d in decision.duplicates)),
                decide_s=time.perf_counter() - td,
            )
        )

    t2 = time.perf_counter()
    await repository.write_contacts(conn, index.contacts)
    t_contacts = time.perf_counter() - t2
    t3 = time.perf_counter()
    await repository.write_leads(conn, leads, pairs)
    t_leads = time.perf_counter() - t3

    end = clock()
    out: list[Finished] = []
    for item in batch.finished:
        if isinstance(item, Finished):
            out.append(item)
            continue
        ev = item.event
        steps = {
            **ev.steps,
            "dedupe": _ms(t_lookup + item.decide_s),
            "contact_write": _ms(t_contacts),
            "lead": _ms(t_leads),
            "rules": _ms(t_rules),
        }
        # Built from parts that are validated already (the decoded event, our own
        # summary): construct without re-validating, the hot path's biggest saving.
        event = LeadProcessed.model_construct(
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
                duration_ms=_ms(max((end - ev.received_at).total_seconds(), 0.0)),
                steps=steps,
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
        )
        out.append(
            _store(
                batch,
                item.message,
                event=event,
                status="processed",
                idempotency_key=ev.idempotency_key,
                body_sha256=ev.body_sha256,
                match_type=item.match_type,
                possible_duplicates=len(item.duplicates),
            )
        )
    t4 = time.perf_counter()
    await repository.record(conn, batch.rows)
    t_record = time.perf_counter() - t4
    if hold_s:
        await asyncio.sleep(hold_s)

    metrics.STEP_SECONDS.labels("lookup").observe(t_lookup)
    metrics.STEP_SECONDS.labels("rules").observe(t_rules)
    metrics.STEP_SECONDS.labels("contact_write").observe(t_contacts)
    metrics.STEP_SECONDS.labels("lead").observe(t_leads)
    metrics.STEP_SECONDS.labels("record").observe(t_record)
    return out


def _fail(
    batch: _Batch, m: Message[Incoming], ev: LeadReceived, error: ErrorInfo, now: datetime
) -> Finished:
    event = _failed_event(
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
    return _store(
        batch,
        m,
        event=event,
        status="failed",
        idempotency_key=ev.idempotency_key,
        body_sha256=ev.body_sha256,
        poison=_dlq_reason(error),
    )


def _rejected(
    batch: _Batch,
    m: Message[Incoming],
    ev: LeadReceived,
    *,
    request_id: uuid.UUID,
    status: str,
    reason: str,
    errors: list[FieldError],
    now: datetime,
) -> Finished:
    event = LeadRejected(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=ev.workspace_id,
        webhook_id=ev.webhook_id,
        occurred_at=now,
        received_at=ev.received_at,
        request=ev.request,
        processing=Processing(
            start=ev.received_at,
            end=now,
            duration_ms=_ms(max((now - ev.received_at).total_seconds(), 0.0)),
            steps=dict(ev.steps),
        ),
        replay_of=ev.replay_of,
        status_code=409,
        reason=reason,
        errors=errors,
    )
    return _store(
        batch,
        m,
        event=event,
        status=status,
        idempotency_key=ev.idempotency_key,
        body_sha256=ev.body_sha256,
    )


def _conflict(batch: _Batch, m: Message[Incoming], ev: LeadReceived, now: datetime) -> Finished:
    """The vendor reused an idempotency key with another body: reject it, create nothing."""
    rid = conflict_request_id(ev)
    if rid in batch.stored:
        return _republish(m, batch.stored[rid], ev.workspace_id)
    return _rejected(
        batch,
        m,
        ev,
        request_id=rid,
        status="rejected",
        reason="idempotency_conflict",
        errors=[
            FieldError(
                field="idempotency_key",
                code="conflict",
                message=f"this idempotency key was first used by request {ev.request_id} with another body",
            )
        ],
        now=now,
    )


def _duplicate_key(
    batch: _Batch, m: Message[Incoming], ev: LeadReceived, holder: uuid.UUID, now: datetime
) -> Finished:
    """Another request already holds this webhook's idempotency key (a request id minted
    some other way than from the key): this one is a duplicate and creates nothing."""
    return _rejected(
        batch,
        m,
        ev,
        request_id=ev.request_id,
        status="duplicate",
        reason="duplicate",
        errors=[
            FieldError(
                field="idempotency_key",
                code="duplicate",
                message=f"this idempotency key belongs to request {holder}",
            )
        ],
        now=now,
    )


async def record_failure(
    message: Message[Incoming],
    error: ErrorInfo,
    *,
    conn: repository.Connection,
    clock: Callable[[], datetime] = utcnow,
) -> Finished:
    """Store a message Postgres refused as a failed request (its own transaction)."""
    value = message.value
    if isinstance(value, Undecodable):
        rid = _parse_uuid(value.fields.get("request_id"))
        if rid is not None:
            await repository.lock_identities(conn, [repository.lock_key("request", rid)])
        batch = _Batch(stored=await repository.stored_requests(conn, [rid] if rid else []))
        finished = _undecodable(batch, message, value, clock())
        await repository.record(conn, batch.rows)
        return finished
    await repository.lock_identities(conn, [repository.lock_key("request", value.request_id)])
    batch = _Batch(stored=await repository.stored_requests(conn, [value.request_id]))
    if value.request_id in batch.stored:
        return _republish(message, batch.stored[value.request_id], value.workspace_id)
    finished = _fail(batch, message, value, error, clock())
    await repository.record(conn, batch.rows)
    return finished


# --- the runner's handler -----------------------------------------------------------


AfterCommit = Callable[[list[Finished]], Awaitable[None] | None]


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


class BatchHandler:
    """The raw-topic batch handler: transactions, retries, fallback, publishing."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        publisher: Publisher,
        settings: ProcessorSettings,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._settings = settings
        self._after_commit = after_commit
        self._published = PublishedIds()

    async def __call__(self, messages: list[Message[Incoming]]) -> None:
        started = time.perf_counter()
        metrics.RECEIVED.inc(len(messages))
        size = self._settings.processor_tx_max_leads
        finished: list[Finished] = []
        for i in range(0, len(messages), size):
            chunk = messages[i : i + size]
            try:
                finished += await self._transact(chunk)
            except Unwritable as exc:
                metrics.FALLBACKS.inc()
                log.warning(
                    "batch_unwritable_fallback", size=len(chunk), error=type(exc.error).__name__
                )
                finished += await self._one_by_one(chunk)
        committed = time.perf_counter()
        committed_at = utcnow()
        if any(f.fresh for f in finished):
            if self._settings.processor_crash_after_commit:
                log.warning("fault_crash_after_commit")
                os._exit(137)
            if self._after_commit is not None:
                result = self._after_commit(finished)
                if result is not None:
                    await result
        await self._publish(finished)
        published = time.perf_counter()
        self._count(finished, started, committed, published, committed_at)
        poison = next((f for f in finished if f.poison is not None), None)
        if poison is not None:
            metrics.POISON.labels(poison.poison.split(":", 1)[0][:40]).inc()  # type: ignore[union-attr]
            raise PoisonMessage(poison.message, poison.poison)  # type: ignore[arg-type]

    async def _transact(self, chunk: Sequence[Message[Incoming]]) -> list[Finished]:
        attempts = self._settings.processor_tx_attempts
        hold_s = self._settings.processor_slow_batch_ms / 1000
        for attempt in range(1, attempts + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    result = await process_batch(chunk, conn=conn, hold_s=hold_s)
                    tc = time.perf_counter()
                # The transaction committed when the block above exited.
                metrics.STEP_SECONDS.labels("commit").observe(time.perf_counter() - tc)
                return result
            except _RETRYABLE as exc:
                metrics.TX_RETRIES.labels(type(exc).__name__).inc()
                if attempt == attempts:
                    raise TransactionConflict(
                        f"{type(exc).__name__} after {attempts} attempts"
                    ) from exc
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
            except _UNWRITABLE as exc:
                raise Unwritable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _one_by_one(self, chunk: Sequence[Message[Incoming]]) -> list[Finished]:
        out: list[Finished] = []
        for m in chunk:
            try:
                out += await self._transact([m])
            except Unwritable as exc:
                out.append(await self._record_failure(m, error_info(exc.error)))
        return out

    async def _record_failure(self, message: Message[Incoming], error: ErrorInfo) -> Finished:
        attempts = self._settings.processor_tx_attempts
        for attempt in range(1, attempts + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await record_failure(message, error, conn=conn)
            except _RETRYABLE as exc:
                metrics.TX_RETRIES.labels(type(exc).__name__).inc()
                if attempt == attempts:
                    raise TransactionConflict(str(type(exc).__name__)) from exc
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
            except _UNWRITABLE as exc:
                # Even the failure record is refused (e.g. a NUL in its idempotency key):
                # the dead-letter topic is the only place left for it.
                log.error("failure_unrecordable", error=type(exc).__name__)
                return Finished(
                    message, None, None, "failed", None, fresh=True, poison=_dlq_reason(error)
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _publish(self, finished: Sequence[Finished]) -> None:
        """Publish each distinct outcome once (keyed by workspace); Kafka down raises and
        the runner retries the batch, which re-publishes the stored outcomes."""
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

    def _count(
        self,
        finished: Sequence[Finished],
        started: float,
        committed: float,
        published: float,
        committed_at: datetime,
    ) -> None:
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
