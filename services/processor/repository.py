"""All of the processor's SQL, in one place. Every function runs on a connection the caller
holds inside a transaction; batches are written with ``unnest`` (one statement per table
per batch, not one per lead)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from services.processor.dedupe import KEY_TYPES, ContactState
from services.processor.rules import BoardRule, parse_conditions

Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


def lock_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key for an identity (workspace, key type, value)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_identities(conn: Connection, keys: Iterable[int]) -> None:
    """Take transaction-scoped advisory locks on every key, in ascending order.

    Every processor locks in the same (sorted) order, so two batches that share keys wait
    for each other instead of deadlocking. The locks go at commit or rollback.
    """
    ordered = sorted(set(keys))
    if ordered:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", ordered
        )


@dataclass(frozen=True)
class StoredRequest:
    request_id: uuid.UUID
    status: str
    body_sha256: str | None
    result: bytes | None
    error: dict[str, Any] | None


@dataclass
class BatchView:
    """What a batch needs to read, fetched in one statement after its locks."""

    stored: dict[uuid.UUID, StoredRequest]
    # webhook id -> its workspace id, for the webhooks that exist.
    webhooks: dict[uuid.UUID, uuid.UUID]
    # (webhook id, idempotency key) -> request id of the lead that already holds it.
    idempotency_holders: dict[tuple[uuid.UUID, str], uuid.UUID]
    # Contacts holding any of the batch's keys, row-locked (FOR UPDATE, in id order).
    contacts: list[ContactState]
    # Each workspace's board rules in evaluation order.
    rules: dict[uuid.UUID, list[BoardRule]]


_LOAD = """
WITH stored AS (
    SELECT request_id, status, body_sha256, result, error
      FROM webhook_requests
     WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL),
hooks AS (
    SELECT id, workspace_id FROM webhooks WHERE id = ANY($2::uuid[])),
idem AS (
    SELECT l.webhook_id, l.idempotency_key, l.request_id
      FROM leads l JOIN unnest($3::uuid[], $4::text[]) AS k(webhook_id, idem)
        ON l.webhook_id = k.webhook_id AND l.idempotency_key = k.idem),
found AS (
    SELECT c.id FROM contacts c JOIN unnest($5::uuid[], $6::text[]) AS k(ws, v)
        ON c.workspace_id = k.ws AND c.crm_id = k.v AND c.crm_id IS NOT NULL
    UNION
    SELECT c.id FROM contacts c JOIN unnest($7::uuid[], $8::text[]) AS k(ws, v)
        ON c.workspace_id = k.ws AND c.phone = k.v AND c.phone IS NOT NULL
    UNION
    SELECT c.id FROM contacts c JOIN unnest($9::uuid[], $10::text[]) AS k(ws, v)
        ON c.workspace_id = k.ws AND c.email = k.v AND c.email IS NOT NULL),
locked AS (
    SELECT c.id, c.workspace_id, c.crm_id, c.phone, c.email, c.first_name, c.last_name,
           c.product, c.lead_status, c.custom, c.board_id
      FROM contacts c
     WHERE c.id IN (SELECT id FROM found)
     ORDER BY c.id
       FOR UPDATE),
rules AS (
    SELECT r.id, r.workspace_id, r.board_id, b.name AS board_name, r.webhook_id, r.conditions,
           r.priority, r.created_at
      FROM board_rules r JOIN boards b ON b.id = r.board_id
     WHERE r.workspace_id = ANY($11::uuid[]))
SELECT (SELECT json_agg(s) FROM stored s) AS stored,
       (SELECT json_agg(h) FROM hooks h) AS hooks,
       (SELECT json_agg(i) FROM idem i) AS idem,
       (SELECT json_agg(json_build_object(
                   'id', c.id, 'workspace_id', c.workspace_id, 'crm_id', c.crm_id,
                   'phone', c.phone, 'email', c.email, 'first_name', c.first_name,
                   'last_name', c.last_name, 'product', c.product,
                   'lead_status', c.lead_status, 'custom', c.custom,
                   'board_id', c.board_id, 'board_name', b.name))
          FROM locked c LEFT JOIN boards b ON b.id = c.board_id) AS contacts,
       (SELECT json_agg(r ORDER BY r.workspace_id, r.priority, r.created_at, r.id)
          FROM rules r) AS rules
"""


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


async def load_batch(
    conn: Connection,
    *,
    request_ids: Sequence[uuid.UUID],
    webhook_ids: Sequence[uuid.UUID],
    idempotency: Sequence[tuple[uuid.UUID, str]],
    keys: Iterable[tuple[uuid.UUID, str, str]],
    workspace_ids: Sequence[uuid.UUID],
) -> BatchView:
    """Everything a batch reads, in one round trip; call it after :func:`lock_identities`.

    It runs after the locks are held, so its snapshot includes whatever the transaction
    it waited for committed. The contacts are locked ``FOR UPDATE`` in id order: the batch's
    view of them stays current until it commits (a processor reaching the same contact
    through another key waits), and every processor locks rows in the same order. The
    contacts come back as they are now, so a contact that gave a key up while this waited
    is indexed under its current keys, not the one that found it.
    """
    by_kind: dict[str, tuple[list[uuid.UUID], list[str]]] = {k: ([], []) for k in KEY_TYPES}
    for workspace_id, kind, value in keys:
        by_kind[kind][0].append(workspace_id)
        by_kind[kind][1].append(value)
    row = await conn.fetchrow(
        _LOAD,
        list(set(request_ids)),
        list(set(webhook_ids)),
        [p[0] for p in idempotency],
        [p[1] for p in idempotency],
        *by_kind["crm_id"],
        *by_kind["phone"],
        *by_kind["email"],
        list(set(workspace_ids)),
    )
    assert row is not None
    stored = {
        uuid.UUID(s["request_id"]): StoredRequest(
            request_id=uuid.UUID(s["request_id"]),
            status=s["status"],
            body_sha256=s["body_sha256"],
            result=orjson.dumps(s["result"]),
            error=s["error"],
        )
        for s in row["stored"] or ()
    }
    contacts = [
        ContactState(
            id=uuid.UUID(c["id"]),
            workspace_id=uuid.UUID(c["workspace_id"]),
            crm_id=c["crm_id"],
            phone=c["phone"],
            email=c["email"],
            first_name=c["first_name"],
            last_name=c["last_name"],
            product=c["product"],
            lead_status=c["lead_status"],
            custom=dict(c["custom"] or {}),
            board_id=_uuid(c["board_id"]),
            board_name=c["board_name"],
        )
        for c in row["contacts"] or ()
    ]
    rules: dict[uuid.UUID, list[BoardRule]] = {}
    for r in row["rules"] or ():
        conditions, valid = parse_conditions(r["conditions"])
        rules.setdefault(uuid.UUID(r["workspace_id"]), []).append(
            BoardRule(
                id=uuid.UUID(r["id"]),
                board_id=uuid.UUID(r["board_id"]),
                board_name=r["board_name"],
                webhook_id=_uuid(r["webhook_id"]),
                conditions=conditions,
                valid=valid,
            )
        )
    return BatchView(
        stored=stored,
        webhooks={uuid.UUID(h["id"]): uuid.UUID(h["workspace_id"]) for h in row["hooks"] or ()},
        idempotency_holders={
            (uuid.UUID(i["webhook_id"]), i["idempotency_key"]): uuid.UUID(i["request_id"])
            for i in row["idem"] or ()
        },
        contacts=contacts,
        rules=rules,
    )


async def stored_requests(
    conn: Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredRequest]:
    """Requests already finished, by id (a row without a result is not finished)."""
    view = await load_batch(
        conn, request_ids=ids, webhook_ids=(), idempotency=(), keys=(), workspace_ids=()
    )
    return view.stored


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # integers beyond 64 bits: the stdlib encoder takes them
        return json.dumps(value, default=str, ensure_ascii=False)


async def write_contacts(conn: Connection, contacts: Sequence[ContactState]) -> None:
    """Persist the batch's final contact states (updates and inserts in one statement).

    Keys an existing contact gives up are cleared first, in a statement of their own, so a
    key that moves within the batch (one contact changes its phone, another lead's contact
    takes the old one) never meets its former holder in the unique index, whatever order
    the rows are written in.
    """
    changed = [c for c in contacts if c.dirty and not c.is_new]
    created = [c for c in contacts if c.dirty and c.is_new]
    clearing = [(c, c.cleared_keys()) for c in changed]
    clearing = [(c, kinds) for c, kinds in clearing if kinds]
    if clearing:
        await conn.execute(
            """UPDATE contacts c
                  SET crm_id = CASE WHEN u.crm THEN NULL ELSE c.crm_id END,
                      phone  = CASE WHEN u.phone THEN NULL ELSE c.phone END,
                      email  = CASE WHEN u.email THEN NULL ELSE c.email END
                 FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bool[]) AS u(id, crm, phone, email)
                WHERE c.id = u.id""",
            [c.id for c, _ in clearing],
            ["crm_id" in kinds for _, kinds in clearing],
            ["phone" in kinds for _, kinds in clearing],
            ["email" in kinds for _, kinds in clearing],
        )
    if not changed and not created:
        return
    await conn.execute(
        """WITH upd AS (
               UPDATE contacts c
                  SET crm_id = u.crm_id, phone = u.phone, email = u.email,
                      first_name = u.first_name, last_name = u.last_name,
                      product = u.product, lead_status = u.lead_status,
                      custom = u.custom::jsonb, board_id = u.board_id, updated_at = now()
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[])
                   AS u(id, crm_id, phone, email, first_name, last_name, product,
                        lead_status, custom, board_id)
                WHERE c.id = u.id
            RETURNING 1),
           ins AS (
               INSERT INTO contacts (id, crm_id, phone, email, first_name, last_name, product,
                                     lead_status, custom, board_id, workspace_id)
               SELECT u.id, u.crm_id, u.phone, u.email, u.first_name, u.last_name, u.product,
                      u.lead_status, u.custom::jsonb, u.board_id, u.workspace_id
                 FROM unnest($11::uuid[], $12::text[], $13::text[], $14::text[], $15::text[],
                             $16::text[], $17::text[], $18::text[], $19::text[], $20::uuid[],
                             $21::uuid[])
                   AS u(id, crm_id, phone, email, first_name, last_name, product,
                        lead_status, custom, board_id, workspace_id)
            RETURNING 1)
           SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins)""",
        *_contact_columns(changed),
        *_contact_columns(created),
        [c.workspace_id for c in created],
    )


def _contact_columns(contacts: Sequence[ContactState]) -> list[list[Any]]:
    return [
        [c.id for c in contacts],
        [c.crm_id for c in contacts],
        [c.phone for c in contacts],
        [c.email for c in contacts],
        [c.first_name for c in contacts],
        [c.last_name for c in contacts],
        [c.product for c in contacts],
        [c.lead_status for c in contacts],
        [_json(c.custom) for c in contacts],
        [c.board_id for c in contacts],
    ]


@dataclass(frozen=True)
class LeadRow:
    id: uuid.UUID
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    webhook_id: uuid.UUID
    request_id: uuid.UUID
    idempotency_key: str | None
    source: str
    status: str | None
    product_interest: str | None
    replay_of: uuid.UUID | None


@dataclass(frozen=True)
class DuplicatePair:
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    other_contact_id: uuid.UUID
    key_type: str
    request_id: uuid.UUID


@dataclass(frozen=True)
class RequestRow:
    request_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    status: str
    received_at: datetime
    processed_at: datetime
    idempotency_key: str | None
    body_sha256: str | None
    replay_of: uuid.UUID | None
    # The outcome event exactly as published (JSON text).
    result: str
    steps: dict[str, float]
    error: dict[str, Any] | None


_LEADS = """
WITH new_leads AS (
    INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id,
                       idempotency_key, source, status, product_interest, replay_of)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[])
    RETURNING 1),
pairs AS (
    INSERT INTO possible_duplicates (workspace_id, contact_id, other_contact_id, key_type, request_id)
    SELECT * FROM unnest($11::uuid[], $12::uuid[], $13::uuid[], $14::text[], $15::uuid[])
    ON CONFLICT (workspace_id, contact_id, other_contact_id, key_type) DO NOTHING
    RETURNING 1)
SELECT (SELECT count(*) FROM new_leads), (SELECT count(*) FROM pairs)
"""


async def write_leads(
    conn: Connection, leads: Sequence[LeadRow], pairs: Sequence[DuplicatePair] = ()
) -> None:
    """Insert the batch's leads and possible duplicate pairs (one statement)."""
    if not (leads or pairs):
        return
    await conn.execute(
        _LEADS,
        [x.id for x in leads],
        [x.workspace_id for x in leads],
        [x.contact_id for x in leads],
        [x.webhook_id for x in leads],
        [x.request_id for x in leads],
        [x.idempotency_key for x in leads],
        [x.source for x in leads],
        [x.status for x in leads],
        [x.product_interest for x in leads],
        [x.replay_of for x in leads],
        [p.workspace_id for p in pairs],
        [p.contact_id for p in pairs],
        [p.other_contact_id for p in pairs],
        [p.key_type for p in pairs],
        [p.request_id for p in pairs],
    )


_RECORD = """
WITH finished AS (
    INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                  processed_at, idempotency_key, body_sha256, replay_of,
                                  result, steps, error)
    SELECT u.request_id, u.workspace_id, u.webhook_id, u.status, u.received_at,
           u.processed_at, u.idempotency_key, u.body_sha256, u.replay_of,
           u.result::jsonb, u.steps::jsonb, u.error::jsonb
      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[],
                  $6::timestamptz[], $7::text[], $8::text[], $9::uuid[], $10::text[],
                  $11::text[], $12::text[])
        AS u(request_id, workspace_id, webhook_id, status, received_at, processed_at,
             idempotency_key, body_sha256, replay_of, result, steps, error)
    ON CONFLICT (request_id) DO UPDATE
       SET status = EXCLUDED.status, processed_at = EXCLUDED.processed_at,
           result = EXCLUDED.result, steps = EXCLUDED.steps, error = EXCLUDED.error,
           body_sha256 = COALESCE(webhook_requests.body_sha256, EXCLUDED.body_sha256)
     WHERE webhook_requests.result IS NULL
    RETURNING request_id)
SELECT count(pg_notify('leadwire_request_done', f.request_id::text)) FROM finished f
"""


async def record(conn: Connection, requests: Sequence[RequestRow]) -> None:
    """Store finished requests (result = the outcome as published) and wake whoever waits
    for them (``Prefer: wait``), in one statement.

    A request row the gateway may have left without a result is completed in place; a
    finished row is never overwritten (the caller checked, under the identity locks).
    """
    if not requests:
        return
    await conn.execute(
        _RECORD,
        [r.request_id for r in requests],
        [r.workspace_id for r in requests],
        [r.webhook_id for r in requests],
        [r.status for r in requests],
        [r.received_at for r in requests],
        [r.processed_at for r in requests],
        [r.idempotency_key for r in requests],
        [r.body_sha256 for r in requests],
        [r.replay_of for r in requests],
        [r.result for r in requests],
        [_json(r.steps) for r in requests],
        [_json(r.error) if r.error is not None else None for r in requests],
    )


async def ping(conn: Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
