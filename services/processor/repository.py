"""All of the processor's SQL, in one place. Every function runs on a connection the caller
holds inside a transaction; batches are written with ``unnest`` (one statement per table
per batch, not one per lead)."""

from __future__ import annotations

import hashlib
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


async def stored_requests(conn: Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredRequest]:
    """Requests already finished (a placeholder row the gateway may keep, status
    'accepted' and no result, counts as not finished)."""
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT request_id, status, body_sha256, result::text AS result, error
             FROM webhook_requests
            WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL""",
        list(set(ids)),
    )
    return {
        r["request_id"]: StoredRequest(
            request_id=r["request_id"],
            status=r["status"],
            body_sha256=r["body_sha256"],
            result=r["result"].encode() if r["result"] is not None else None,
            error=r["error"],
        )
        for r in rows
    }


async def webhook_workspaces(conn: Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """webhook id -> its workspace id, for the webhooks that exist."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, workspace_id FROM webhooks WHERE id = ANY($1::uuid[])", list(set(ids))
    )
    return {r["id"]: r["workspace_id"] for r in rows}


async def leads_by_idempotency(
    conn: Connection, pairs: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """(webhook id, idempotency key) -> request id of the lead that already holds it."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        """SELECT l.webhook_id, l.idempotency_key, l.request_id
             FROM leads l
             JOIN unnest($1::uuid[], $2::text[]) AS k(webhook_id, idem)
               ON l.webhook_id = k.webhook_id AND l.idempotency_key = k.idem""",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return {(r["webhook_id"], r["idempotency_key"]): r["request_id"] for r in rows}


_CONTACT_COLUMNS = """c.id, c.workspace_id, c.crm_id, c.phone, c.email, c.first_name,
    c.last_name, c.product, c.lead_status, c.custom, c.board_id, b.name AS board_name"""


async def contacts_for_keys(
    conn: Connection, keys: Iterable[tuple[uuid.UUID, str, str]]
) -> list[ContactState]:
    """Contacts holding any of the (workspace, key type, value) keys, row-locked.

    ``FOR UPDATE`` in id order: the batch's view of these contacts stays current until it
    commits (another processor reaching the same contact through a different key waits),
    and every processor locks rows in the same order.
    """
    by_kind: dict[str, tuple[list[uuid.UUID], list[str]]] = {k: ([], []) for k in KEY_TYPES}
    for workspace_id, kind, value in keys:
        by_kind[kind][0].append(workspace_id)
        by_kind[kind][1].append(value)
    rows = await conn.fetch(
        f"""SELECT {_CONTACT_COLUMNS}
              FROM contacts c LEFT JOIN boards b ON b.id = c.board_id
             WHERE c.id IN (
                   SELECT c1.id FROM contacts c1
                     JOIN unnest($1::uuid[], $2::text[]) AS k(ws, v)
                       ON c1.workspace_id = k.ws AND c1.crm_id = k.v AND c1.crm_id IS NOT NULL
                   UNION
                   SELECT c2.id FROM contacts c2
                     JOIN unnest($3::uuid[], $4::text[]) AS k(ws, v)
                       ON c2.workspace_id = k.ws AND c2.phone = k.v AND c2.phone IS NOT NULL
                   UNION
                   SELECT c3.id FROM contacts c3
                     JOIN unnest($5::uuid[], $6::text[]) AS k(ws, v)
                       ON c3.workspace_id = k.ws AND c3.email = k.v AND c3.email IS NOT NULL)
             ORDER BY c.id
               FOR UPDATE OF c""",
        *by_kind["crm_id"],
        *by_kind["phone"],
        *by_kind["email"],
    )
    return [
        ContactState(
            id=r["id"],
            workspace_id=r["workspace_id"],
            crm_id=r["crm_id"],
            phone=r["phone"],
            email=r["email"],
            first_name=r["first_name"],
            last_name=r["last_name"],
            product=r["product"],
            lead_status=r["lead_status"],
            custom=dict(r["custom"] or {}),
            board_id=r["board_id"],
            board_name=r["board_name"],
        )
        for r in rows
    ]


async def board_rules(conn: Connection, workspace_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[BoardRule]]:
    """Each workspace's rules in evaluation order: (priority, created_at, id)."""
    if not workspace_ids:
        return {}
    rows = await conn.fetch(
        """SELECT r.id, r.workspace_id, r.board_id, b.name AS board_name, r.webhook_id, r.conditions
             FROM board_rules r JOIN boards b ON b.id = r.board_id
            WHERE r.workspace_id = ANY($1::uuid[])
            ORDER BY r.workspace_id, r.priority, r.created_at, r.id""",
        list(set(workspace_ids)),
    )
    out: dict[uuid.UUID, list[BoardRule]] = {}
    for r in rows:
        conditions, valid = parse_conditions(r["conditions"])
        out.setdefault(r["workspace_id"], []).append(
            BoardRule(
                id=r["id"],
                board_id=r["board_id"],
                board_name=r["board_name"],
                webhook_id=r["webhook_id"],
                conditions=conditions,
                valid=valid,
            )
        )
    return out


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


async def write_contacts(conn: Connection, contacts: Sequence[ContactState]) -> None:
    """Persist the batch's final contact states.

    Keys an existing contact gives up are cleared first, so a key that moves within the
    batch (one contact changes its phone, another lead's contact takes the old one) never
    meets its former holder in the unique index, whatever order rows are updated in.
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
    if changed:
        await conn.execute(
            """UPDATE contacts c
                  SET crm_id = u.crm_id, phone = u.phone, email = u.email,
                      first_name = u.first_name, last_name = u.last_name,
                      product = u.product, lead_status = u.lead_status,
                      custom = u.custom::jsonb, board_id = u.board_id, updated_at = now()
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[])
                   AS u(id, crm_id, phone, email, first_name, last_name, product,
                        lead_status, custom, board_id)
                WHERE c.id = u.id""",
            *_contact_columns(changed),
        )
    if created:
        await conn.execute(
            """INSERT INTO contacts (id, crm_id, phone, email, first_name, last_name, product,
                                     lead_status, custom, board_id, workspace_id)
               SELECT u.id, u.crm_id, u.phone, u.email, u.first_name, u.last_name, u.product,
                      u.lead_status, u.custom::jsonb, u.board_id, u.workspace_id
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[],
                             $11::uuid[])
                   AS u(id, crm_id, phone, email, first_name, last_name, product,
                        lead_status, custom, board_id, workspace_id)""",
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


async def insert_leads(conn: Connection, leads: Sequence[LeadRow]) -> None:
    if not leads:
        return
    await conn.execute(
        """INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id,
                              idempotency_key, source, status, product_interest, replay_of)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                                $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[])""",
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
    )


@dataclass(frozen=True)
class DuplicatePair:
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    other_contact_id: uuid.UUID
    key_type: str
    request_id: uuid.UUID


async def insert_possible_duplicates(conn: Connection, pairs: Sequence[DuplicatePair]) -> None:
    if not pairs:
        return
    await conn.execute(
        """INSERT INTO possible_duplicates (workspace_id, contact_id, other_contact_id, key_type, request_id)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[])
           ON CONFLICT (workspace_id, contact_id, other_contact_id, key_type) DO NOTHING""",
        [p.workspace_id for p in pairs],
        [p.contact_id for p in pairs],
        [p.other_contact_id for p in pairs],
        [p.key_type for p in pairs],
        [p.request_id for p in pairs],
    )


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


async def insert_requests(conn: Connection, rows: Sequence[RequestRow]) -> None:
    """Record finished requests and wake whoever waits for them (``Prefer: wait``).

    A row the gateway may have left as an 'accepted' placeholder is completed in place;
    a finished row is never overwritten (the caller checked, under the identity locks).
    """
    if not rows:
        return
    await conn.execute(
        """INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status,
                   received_at, processed_at, idempotency_key, body_sha256, replay_of,
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
            WHERE webhook_requests.result IS NULL""",
        [r.request_id for r in rows],
        [r.workspace_id for r in rows],
        [r.webhook_id for r in rows],
        [r.status for r in rows],
        [r.received_at for r in rows],
        [r.processed_at for r in rows],
        [r.idempotency_key for r in rows],
        [r.body_sha256 for r in rows],
        [r.replay_of for r in rows],
        [r.result for r in rows],
        [_json(r.steps) for r in rows],
        [_json(r.error) if r.error is not None else None for r in rows],
    )
    await conn.execute(
        "SELECT count(pg_notify('leadwire_request_done', id::text)) FROM unnest($1::uuid[]) AS id",
        [r.request_id for r in rows],
    )


async def ping(conn: Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
