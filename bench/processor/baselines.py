"""What the processor is measured against: the seed's naive flow (one transaction per lead,
one connection) and the machine's ceiling (the same rows by batched ``INSERT ... unnest``,
no dedupe logic)."""

from __future__ import annotations

import time
import uuid

import asyncpg
import orjson

from bench.processor.data import events, new_database, payloads, seed
from shared.db import connect
from shared.events import LeadReceived

# --- naive: the seed's flow ------------------------------------------------------------------


async def _find_contact(conn: asyncpg.Connection, ev: LeadReceived) -> tuple[uuid.UUID | None, str]:
    """The contact by CRM id, then phone, then email: (its id, how it matched)."""
    for kind in ("crm_id", "phone", "email"):
        value = getattr(ev.lead, kind)
        if value is None:
            continue
        contact = await conn.fetchrow(
            f"SELECT id FROM contacts WHERE workspace_id = $1 AND {kind} = $2",
            ev.workspace_id,
            value,
        )
        if contact is not None:
            return contact["id"], kind
    return None, "new"


async def _save_contact(
    conn: asyncpg.Connection, ev: LeadReceived, cid: uuid.UUID | None
) -> uuid.UUID:
    lead = ev.lead
    if cid is None:
        cid = uuid.uuid4()
        await conn.execute(
            """INSERT INTO contacts (id, workspace_id, crm_id, phone, email, first_name, last_name,
                                     product, lead_status, custom)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            cid,
            ev.workspace_id,
            lead.crm_id,
            lead.phone,
            lead.email,
            lead.first_name,
            lead.last_name,
            lead.product,
            lead.lead_status,
            lead.custom,
        )
        return cid
    await conn.execute(
        """UPDATE contacts SET first_name = COALESCE($2, first_name),
                  last_name = COALESCE($3, last_name), product = COALESCE($4, product),
                  lead_status = COALESCE($5, lead_status), custom = custom || $6,
                  updated_at = now()
            WHERE id = $1""",
        cid,
        lead.first_name,
        lead.last_name,
        lead.product,
        lead.lead_status,
        lead.custom,
    )
    return cid


async def _apply_rules(conn: asyncpg.Connection, ev: LeadReceived, cid: uuid.UUID) -> None:
    """The first board rule the lead matches puts its contact on that board."""
    rules = await conn.fetch(
        """SELECT board_id, webhook_id, conditions FROM board_rules
            WHERE workspace_id = $1 ORDER BY priority, created_at""",
        ev.workspace_id,
    )
    for rule in rules:
        if rule["webhook_id"] not in (None, ev.webhook_id):
            continue
        if all(
            str(ev.lead.field(c["field"]) or "").lower()
            in [
                str(v).lower()
                for v in (c["value"] if isinstance(c["value"], list) else [c["value"]])
            ]
            for c in rule["conditions"]
        ):
            await conn.execute(
                "UPDATE contacts SET board_id = $2 WHERE id = $1", cid, rule["board_id"]
            )
            break


async def _naive_one(conn: asyncpg.Connection, ev: LeadReceived) -> None:
    async with conn.transaction():
        found, match = await _find_contact(conn, ev)
        cid = await _save_contact(conn, ev, found)
        await conn.execute(
            """INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id, status, product_interest)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            uuid.uuid4(),
            ev.workspace_id,
            cid,
            ev.webhook_id,
            ev.request_id,
            ev.lead.lead_status,
            ev.lead.product,
        )
        await _apply_rules(conn, ev, cid)
        await conn.execute(
            """INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                             processed_at, result)
               VALUES ($1, $2, $3, 'processed', $4, now(), $5)""",
            ev.request_id,
            ev.workspace_id,
            ev.webhook_id,
            ev.received_at,
            {"match_type": match, "contact_id": str(cid)},
        )


async def naive(admin_url: str, n: int) -> float:
    """The seed's flow, one transaction per lead, one connection: leads/s."""
    url = await new_database(admin_url, "bench_naive")
    evs = events(await seed(url), payloads(n, "n"))
    conn = await connect(url)
    try:
        started = time.monotonic()
        for ev in evs:
            await _naive_one(conn, ev)
        return len(evs) / (time.monotonic() - started)
    finally:
        await conn.close()


# --- the ceiling: batched INSERT ... unnest ------------------------------------------------------


async def ceiling(admin_url: str, n: int) -> float:
    """The same rows (contacts, leads, request records) by batched INSERT ... unnest."""
    url = await new_database(admin_url, "bench_raw")
    evs = events(await seed(url), payloads(n, "r"))
    person_ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
    rows = []
    for ev in evs:
        key = (ev.workspace_id, ev.lead.email or "")
        cid = person_ids.setdefault(key, uuid.uuid4())
        rows.append((ev, cid))
    result = orjson.dumps(
        {
            "request": evs[0].request.model_dump(mode="json"),
            "lead": evs[0].lead.model_dump(mode="json"),
        }
    ).decode()
    conn = await connect(url)
    try:
        started = time.monotonic()
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO contacts (id, workspace_id, crm_id, phone, email, first_name, last_name,
                                             product, lead_status, custom)
                       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                            $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[])
                       ON CONFLICT DO NOTHING""",
                    [c for _, c in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [e.lead.crm_id for e, _ in chunk],
                    [e.lead.phone for e, _ in chunk],
                    [e.lead.email for e, _ in chunk],
                    [e.lead.first_name for e, _ in chunk],
                    [e.lead.last_name for e, _ in chunk],
                    [e.lead.product for e, _ in chunk],
                    [e.lead.lead_status for e, _ in chunk],
                    [e.lead.custom for e, _ in chunk],
                )
                await conn.execute(
                    """INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id, status, product_interest)
                       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                                            $6::text[], $7::text[])""",
                    [uuid.uuid4() for _ in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [c for _, c in chunk],
                    [e.webhook_id for e, _ in chunk],
                    [e.request_id for e, _ in chunk],
                    [e.lead.lead_status for e, _ in chunk],
                    [e.lead.product for e, _ in chunk],
                )
                await conn.execute(
                    """INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                                     processed_at, result)
                       SELECT r, w, h, 'processed', now(), now(), x::jsonb
                         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS u(r, w, h, x)""",
                    [e.request_id for e, _ in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [e.webhook_id for e, _ in chunk],
                    [result] * len(chunk),
                )
        return len(rows) / (time.monotonic() - started)
    finally:
        await conn.close()
