"""One batch, one transaction: locks, one read, dedupe and board rules in memory, writes.

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
  deadlock retries the whole transaction (it is never surfaced, see ``commit.py``).
- Poison: a message that can never be written (undecodable, unknown webhook) is recorded
  as a failed request with a ``LeadFailed`` outcome and marked poison, so the handler
  raises it for the runner to dead-letter (a value Postgres refuses: ``commit.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from services.processor import metrics, outcomes, screening
from services.processor.batch import Batch
from services.processor.decode import Incoming, Undecodable, parse_uuid
from services.processor.dedupe import IdentityIndex, identity_keys
from services.processor.outcomes import Decided, Finished
from services.processor.repository import (
    BatchQuery,
    DuplicatePair,
    LeadKeyRow,
    LeadRow,
    StoredRequest,
    Transaction,
    lock_key,
)
from services.processor.rules import first_match
from shared.events import (
    FLAG_SUPPRESSED,
    REASON_DUPLICATE_LEAD,
    REASON_SUPPRESSED,
    ErrorInfo,
    FieldError,
    LeadReceived,
    MappedLead,
    RawRequest,
    request_id_for,
    utcnow,
)
from shared.kafka import Message

# --- what a batch locks and reads ----------------------------------------------------


def lock_keys_of(messages: Sequence[Message[Incoming]]) -> list[int]:
    """Advisory lock keys: each lead's identity keys; a lead without one locks its request."""
    keys: list[int] = []
    for m in messages:
        value = m.value
        if isinstance(value, Undecodable):
            if value.request_id is not None:
                keys.append(lock_key("request", value.request_id))
            continue
        ids = identity_keys(value.lead)
        if not ids:
            keys.append(lock_key("request", value.request_id))
        for kind, key in ids.items():
            keys.append(lock_key(value.workspace_id, kind, key))
    return keys


def conflict_request_id(event: LeadReceived) -> uuid.UUID:
    """The request id of "this key came back with another body": deterministic, so a
    redelivered conflicting message is recognised and rejected only once."""
    return request_id_for(event.webhook_id, f"{event.idempotency_key}#{event.body_sha256}")


def batch_query(messages: Sequence[Message[Incoming]]) -> BatchQuery:
    """What the batch reads: its requests (and conflict ids), webhooks, idempotency keys,
    identity keys and workspaces."""
    events = [m.value for m in messages if isinstance(m.value, LeadReceived)]
    lookup_ids: list[uuid.UUID] = []
    for m in messages:
        if isinstance(m.value, LeadReceived):
            lookup_ids.append(m.value.request_id)
            if m.value.idempotency_key is not None:
                lookup_ids.append(conflict_request_id(m.value))
        elif m.value.request_id is not None:
            lookup_ids.append(m.value.request_id)
    return BatchQuery(
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
        digests=list(
            dict.fromkeys(
                (e.workspace_id, e.webhook_id, kind, value)
                for e in events
                for kind, value in screening.lead_digests(e.lead).items()
            )
        ),
    )


# --- one transaction ----------------------------------------------------------------


async def process_batch(
    messages: Sequence[Message[Incoming]],
    *,
    tx: Transaction,
    clock: Callable[[], datetime] = utcnow,
    in_transaction: Callable[[], Awaitable[None]] | None = None,
) -> list[Finished]:
    """Everything one transaction does for a batch; the caller owns the transaction."""
    t0 = time.perf_counter()
    await tx.lock_identities(lock_keys_of(messages))
    view = await tx.load_batch(batch_query(messages))
    batch = Batch(view=view, index=IdentityIndex(view.contacts))
    t_lookup = time.perf_counter() - t0

    now = clock()
    decided = [decide(batch, m, now) for m in messages]

    t2 = time.perf_counter()
    await tx.write(batch.index.contacts, batch.leads, batch.pairs, list(batch.lead_keys.values()))
    t_write = time.perf_counter() - t2

    end = clock()
    # A batched statement's time is divided among the leads it wrote: no lead is given
    # the whole batch's (the lookup also served the leads the batch rejected).
    share = 1 / max(len(batch.leads), 1)
    out: list[Finished] = []
    for item in decided:
        if isinstance(item, Decided):
            steps = {
                "contact_processing": outcomes.ms(item.decide_s + t_lookup * share),
                "board_assignment": outcomes.ms(item.rules_s),
                "lead_creation": outcomes.ms(t_write * share),
            }
            item = _processed(batch, item, steps, end)
        out.append(item)
    t4 = time.perf_counter()
    await tx.record(batch.rows)
    t_record = time.perf_counter() - t4
    if in_transaction is not None:
        await in_transaction()  # a test's slow batch, holding its locks

    metrics.STEP_SECONDS.labels("lookup").observe(t_lookup)
    metrics.STEP_SECONDS.labels("rules").observe(batch.rules_s)
    metrics.STEP_SECONDS.labels("write").observe(t_write)
    metrics.STEP_SECONDS.labels("record").observe(t_record)
    return out


def decide(batch: Batch, m: Message[Incoming], now: datetime) -> Finished | Decided:
    """What one message comes to, in the batch's order (earlier leads are seen)."""
    ev = m.value
    if isinstance(ev, Undecodable):
        return _undecodable(batch, m, ev, now)
    stored = batch.stored.get(ev.request_id)
    if stored is not None:
        if (
            ev.idempotency_key is not None
            and stored.body_sha256 is not None
            and stored.body_sha256 != ev.body_sha256
        ):
            return _conflict(batch, m, ev, now)
        return outcomes.republish(m, stored, ev.workspace_id)
    webhooks = batch.view.webhooks
    if webhooks.get(ev.webhook_id) != ev.workspace_id:
        error = ErrorInfo(
            type="UnknownWebhook",
            message="webhook not found"
            if ev.webhook_id not in webhooks
            else "webhook belongs to another workspace",
        )
        return _fail(batch, m, ev, error, now)
    holder = (
        batch.view.idempotency_holders.get((ev.webhook_id, ev.idempotency_key))
        if ev.idempotency_key is not None
        else None
    )
    if holder is not None and holder != ev.request_id:
        return _duplicate_key(batch, m, ev, holder, now)
    return screen(batch, m, ev, now)


def screen(
    batch: Batch, m: Message[Incoming], ev: LeadReceived, now: datetime
) -> Finished | Decided:
    """The buyer's refusals (:mod:`~services.processor.screening`), then the lead."""
    t0 = time.perf_counter()
    digests = screening.lead_digests(ev.lead)
    config = batch.view.screening.get(ev.webhook_id, screening.Screening())
    flags: list[str] = []
    listed = screening.suppressed_kinds(ev.workspace_id, digests, batch.view.suppressed)
    if listed and config.suppressed_mode != screening.FLAG:
        why = f"the lead's {' and '.join(listed)} is on the workspace's suppression list"
        errors = [FieldError(field=k, code=REASON_SUPPRESSED, message=why) for k in listed]
        return _refuse(batch, m, ev, REASON_SUPPRESSED, 422, errors, now, t0)
    if listed:
        flags.append(FLAG_SUPPRESSED)
    accepted = batch.view.accepted
    kind = screening.duplicate_key(ev.webhook_id, ev.received_at, digests, config, accepted)
    if kind is not None:
        window = screening.window_text(config.window_s or 0)
        why = f"a lead with this {kind} came from this webhook within the last {window}"
        error = FieldError(field=kind, code=REASON_DUPLICATE_LEAD, message=why)
        return _refuse(batch, m, ev, REASON_DUPLICATE_LEAD, 409, [error], now, t0)
    for key_type, value in screening.accept(
        ev.webhook_id, ev.received_at, digests, config, accepted
    ):
        row = LeadKeyRow(ev.webhook_id, key_type, value, ev.received_at, ev.request_id)
        batch.lead_keys[(ev.webhook_id, key_type, value)] = row
    return apply_lead(batch, m, ev, flags, time.perf_counter() - t0)


def _refuse(
    batch: Batch,
    m: Message[Incoming],
    ev: LeadReceived,
    reason: str,
    code: int,
    errors: list[FieldError],
    now: datetime,
    t0: float,
) -> Finished:
    """A lead the buyer refuses: nothing recorded but its rejected request."""
    steps = {"contact_processing": outcomes.ms(time.perf_counter() - t0)}
    event = outcomes.rejected(
        ev, request_id=ev.request_id, reason=reason, errors=errors, now=now, code=code, steps=steps
    )
    return batch.store(
        m, event, status="rejected", idempotency_key=ev.idempotency_key, body_sha256=ev.body_sha256
    )


def apply_lead(
    batch: Batch, m: Message[Incoming], ev: LeadReceived, flags: list[str], screen_s: float
) -> Decided:
    """Dedupe the lead into a contact, apply the board rules, stage its lead row and its
    possible duplicate pairs."""
    td = time.perf_counter()
    decision = batch.index.apply(ev.workspace_id, ev.lead)
    contact = decision.contact
    tr = time.perf_counter()
    rule = first_match(batch.view.rules.get(ev.workspace_id, ()), ev.webhook_id, ev.lead)
    rules_s = time.perf_counter() - tr
    batch.rules_s += rules_s
    if rule is not None and (
        contact.board_id != rule.board_id or contact.board_name != rule.board_name
    ):
        contact.board_id = rule.board_id
        contact.board_name = rule.board_name
        contact.dirty = True
    lead_id = uuid.uuid4()
    batch.leads.append(
        LeadRow(
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
            consent=ev.lead.consent.model_dump_json() if ev.lead.consent else None,
        )
    )
    for dup in decision.duplicates:
        batch.pairs.append(
            DuplicatePair(
                ev.workspace_id, contact.id, dup.other_contact_id, dup.key_type, ev.request_id
            )
        )
    # Mark the request as taken within the batch: a second copy of it (or of its
    # idempotency key with another body) later in this batch sees it.
    batch.stored[ev.request_id] = StoredRequest(
        ev.request_id, "processed", ev.body_sha256, result=None, error=None
    )
    return Decided(
        message=m,
        event=ev,
        lead_id=lead_id,
        contact_summary=contact.summary(),
        action="created" if decision.is_new_contact else "updated",
        match_type=decision.match_type,
        is_new_contact=decision.is_new_contact,
        rule_applied=rule is not None,
        duplicates=list(dict.fromkeys(d.other_contact_id for d in decision.duplicates)),
        decide_s=screen_s + time.perf_counter() - td - rules_s,
        rules_s=rules_s,
        flags=flags,
    )


def _processed(batch: Batch, item: Decided, steps: dict[str, float], end: datetime) -> Finished:
    ev = item.event
    return batch.store(
        item.message,
        outcomes.processed(item, steps, end),
        status="processed",
        idempotency_key=ev.idempotency_key,
        body_sha256=ev.body_sha256,
        match_type=item.match_type,
        possible_duplicates=len(item.duplicates),
    )


def _fail(
    batch: Batch, m: Message[Incoming], ev: LeadReceived, error: ErrorInfo, now: datetime
) -> Finished:
    return batch.store(
        m,
        outcomes.failed(ev, error, now),
        status="failed",
        idempotency_key=ev.idempotency_key,
        body_sha256=ev.body_sha256,
        poison=outcomes.dlq_reason(error),
    )


def _undecodable(batch: Batch, m: Message[Incoming], bad: Undecodable, now: datetime) -> Finished:
    fields = bad.fields
    request_id = bad.request_id
    workspace_id = parse_uuid(fields.get("workspace_id"))
    webhook_id = parse_uuid(fields.get("webhook_id"))
    error = ErrorInfo(type="SchemaError", message=bad.error[:500])
    if request_id is None or workspace_id is None or webhook_id is None:
        # Nothing identifies the request: there is no outcome to give, only the dead letter.
        return outcomes.dead_letter_only(m, error)
    if request_id in batch.stored:
        return outcomes.republish(m, batch.stored[request_id], workspace_id)
    try:
        received_at = datetime.fromisoformat(str(fields.get("received_at")))
        if received_at.tzinfo is None:
            received_at = now
    except ValueError:
        received_at = now
    try:
        request = RawRequest.model_validate(fields.get("request"))
    except ValidationError:
        request = RawRequest(path="", headers={}, content_type="", payload=None)
    try:
        lead: MappedLead | None = MappedLead.model_validate(fields.get("lead"))
    except ValidationError:
        lead = None
    event = outcomes.failed_event(
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at,
        request=request,
        lead=lead,
        steps={},
        replay_of=parse_uuid(fields.get("replay_of")),
        error=error,
        now=now,
    )
    key, body = fields.get("idempotency_key"), fields.get("body_sha256")
    return batch.store(
        m,
        event,
        status="failed",
        idempotency_key=key if isinstance(key, str) else None,
        body_sha256=body if isinstance(body, str) else None,
        poison=outcomes.dlq_reason(error),
    )


def _conflict(batch: Batch, m: Message[Incoming], ev: LeadReceived, now: datetime) -> Finished:
    """The vendor reused an idempotency key with another body: reject it, create nothing."""
    rid = conflict_request_id(ev)
    if rid in batch.stored:
        return outcomes.republish(m, batch.stored[rid], ev.workspace_id)
    why = f"this idempotency key was first used by request {ev.request_id} with another body"
    return _reject(batch, m, ev, rid, "rejected", why, now)


def _duplicate_key(
    batch: Batch, m: Message[Incoming], ev: LeadReceived, holder: uuid.UUID, now: datetime
) -> Finished:
    """Another request already holds this webhook's idempotency key (a request id minted
    some other way than from the key): this one is a duplicate and creates nothing."""
    why = f"this idempotency key belongs to request {holder}"
    return _reject(batch, m, ev, ev.request_id, "duplicate", why, now)


def _reject(
    batch: Batch,
    m: Message[Incoming],
    ev: LeadReceived,
    request_id: uuid.UUID,
    status: Literal["rejected", "duplicate"],
    why: str,
    now: datetime,
) -> Finished:
    """A 409 for the idempotency key: ``rejected`` (a conflict) or ``duplicate``."""
    conflict = status == "rejected"
    reason = "idempotency_conflict" if conflict else "duplicate"
    code = "conflict" if conflict else "duplicate"
    error = FieldError(field="idempotency_key", code=code, message=why)
    event = outcomes.rejected(ev, request_id=request_id, reason=reason, errors=[error], now=now)
    return batch.store(
        m, event, status=status, idempotency_key=ev.idempotency_key, body_sha256=ev.body_sha256
    )


async def record_failure(
    message: Message[Incoming],
    error: ErrorInfo,
    *,
    tx: Transaction,
    clock: Callable[[], datetime] = utcnow,
) -> Finished:
    """Store a message Postgres refused as a failed request (its own transaction)."""
    value = message.value
    rid = value.request_id
    if rid is not None:
        await tx.lock_identities([lock_key("request", rid)])
    view = await tx.load_batch(BatchQuery(request_ids=[rid] if rid is not None else []))
    batch = Batch(view=view, index=IdentityIndex())
    if isinstance(value, Undecodable):
        finished = _undecodable(batch, message, value, clock())
    elif value.request_id in batch.stored:
        return outcomes.republish(message, batch.stored[value.request_id], value.workspace_id)
    else:
        finished = _fail(batch, message, value, error, clock())
    await tx.record(batch.rows)
    return finished
