"""The processor benchmark's data: a migrated database of its own with workspaces, webhooks,
boards and rules, seed-shaped lead bodies (10 % repeat persons), and the ``LeadReceived``
events the gateway would publish for them."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from shared.db import connect, migrate
from shared.events import LeadReceived, MappedLead, RawRequest, utcnow

WORKSPACES = 8


@dataclass
class Tenant:
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID


async def new_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    return url


async def seed(url: str, count: int = WORKSPACES) -> list[Tenant]:
    """Workspaces, each with a webhook, three boards and four rules (the usual shapes)."""
    conn = await connect(url)
    tenants = []
    try:
        for i in range(count):
            ws, hook = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"bench-{i}"
            )
            await conn.execute(
                "INSERT INTO webhooks (id, workspace_id, name, auth_mode) VALUES ($1, $2, 'vendor', 'none')",
                hook,
                ws,
            )
            boards = [uuid.uuid4() for _ in range(3)]
            for j, b in enumerate(boards):
                await conn.execute(
                    "INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, $3)",
                    b,
                    ws,
                    f"b{j}",
                )
            rules = [
                (boards[0], None, [{"field": "product", "op": "eq", "value": "Solar"}], 10),
                (
                    boards[1],
                    hook,
                    [{"field": "lead_status", "op": "in", "value": ["hot", "urgent"]}],
                    20,
                ),
                (boards[2], None, [{"field": "state", "op": "eq", "value": "CA"}], 30),
                (boards[2], hook, [{"field": "product", "op": "eq", "value": "Bath Remodel"}], 40),
            ]
            for board, webhook, conditions, priority in rules:
                await conn.execute(
                    """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions, priority)
                       VALUES ($1, $2, $3, $4, $5, $6)""",
                    uuid.uuid4(),
                    ws,
                    board,
                    webhook,
                    conditions,
                    priority,
                )
            tenants.append(Tenant(ws, hook))
    finally:
        await conn.close()
    return tenants


def payloads(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` seed-shaped bodies; every tenth repeats an earlier person (10 % duplicates)."""
    out = []
    for i in range(n):
        person = i - 5 if i % 10 == 9 else i
        out.append(
            {
                "firstname": f"First{i}",
                "lastname": "Bench",
                "phone_number": f"+1415{2000000 + person:07d}",
                "email": f"{tag}-{person}@bench.example",
                "external_crm_id": f"crm-{tag}-{person}" if person % 3 == 0 else None,
                "product": ("Bath Remodel", "Solar", "Kitchen", "Roofing")[person % 4],
                "lead_status": ("new", "hot", "new", "contacted")[person % 4],
                "state": ("CA", "TX", "NY", "FL", "WA")[person % 5],
                "utm_source": "bench",
            }
        )
    return out


def event(tenant: Tenant, payload: dict[str, Any]) -> LeadReceived:
    body = orjson.dumps(payload)
    return LeadReceived(
        request_id=uuid.uuid4(),
        workspace_id=tenant.workspace_id,
        webhook_id=tenant.webhook_id,
        received_at=utcnow(),
        body_sha256=hashlib.sha256(body).hexdigest(),
        request=RawRequest(
            path=f"/webhooks/{tenant.webhook_id}",
            headers={"content-type": "application/json"},
            content_type="application/json",
            payload=payload,
        ),
        lead=MappedLead(
            crm_id=payload["external_crm_id"],
            phone=payload["phone_number"],
            email=payload["email"],
            first_name=payload["firstname"],
            last_name=payload["lastname"],
            product=payload["product"],
            lead_status=payload["lead_status"],
            custom={"state": payload["state"], "utm_source": payload["utm_source"]},
        ),
        steps={"authentication": 0.05, "field_mapping": 0.2, "validation": 0.05, "enqueue": 2.0},
    )


def events(tenants: list[Tenant], bodies: list[dict[str, Any]]) -> list[LeadReceived]:
    """One event per body, the tenants taken in turn."""
    return [event(tenants[i % len(tenants)], p) for i, p in enumerate(bodies)]
