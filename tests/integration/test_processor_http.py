"""Through HTTP: the gateway accepts a lead, the processor stores it, and ``Prefer: wait``
answers with the seed's synchronous 200 (contact id, match type, rule applied)."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.ingest import GENERIC_BODY, auth_headers, create_webhook, running_gateway
from tests.support.processor import processor_settings, processors

pytestmark = pytest.mark.integration


async def test_prefer_wait_returns_the_seed_answer(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    conn = await connect(settings.database_url)
    try:
        board = uuid.uuid4()
        await conn.execute(
            "INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, 'New Leads')",
            board,
            hook.workspace_id,
        )
        await conn.execute(
            """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions)
               VALUES ($1, $2, $3, $4, $5)""",
            uuid.uuid4(),
            hook.workspace_id,
            board,
            hook.id,
            [
                {"field": "product", "op": "eq", "value": "Bath Remodel"},
                {"field": "lead_status", "op": "eq", "value": "new"},
            ],
        )
    finally:
        await conn.close()

    async with (
        running_gateway(settings) as gw,
        processors(processor_settings(settings)),
        aiohttp.ClientSession() as http,
    ):
        answers = []
        for payload in (
            GENERIC_BODY,
            {**GENERIC_BODY, "firstname": "Ben", "phone_number": "+16266633445"},
        ):
            body = orjson.dumps(payload)
            headers = {
                "Content-Type": "application/json",
                "Prefer": "wait=20",
                **auth_headers(hook, body),
            }
            async with http.post(gw.hook_url(hook), data=body, headers=headers) as resp:
                answers.append((resp.status, await resp.json()))
        # The vendor retries the second request (same webhook-id): the same answer, no new lead.
        retry_headers = {
            "Content-Type": "application/json",
            "Prefer": "wait=20",
            **auth_headers(hook, body, msg_id=headers["webhook-id"]),
        }
        async with http.post(gw.hook_url(hook), data=body, headers=retry_headers) as resp:
            retried = (resp.status, await resp.json())

    (s1, first), (s2, second) = answers
    print(f"[http] first={first}\n[http] second={second}\n[http] retry={retried[1]}")
    assert (s1, s2, retried[0]) == (200, 200, 200)
    assert first["success"] and first["is_new_contact"] and first["match_type"] == "new"
    assert first["message"] == "Contact created" and first["rule_applied"] is True
    assert second["contact_id"] == first["contact_id"] and second["match_type"] == "crm_id"
    assert (
        second["message"] == "Contact updated via crm_id match"
        and second["is_new_contact"] is False
    )
    assert second["processing_time"].endswith("ms")
    assert retried[1]["request_id"] == second["request_id"] and retried[1]["status"] == "duplicate"
    conn = await connect(settings.database_url)
    try:
        leads = await conn.fetchval("SELECT count(*) FROM leads WHERE webhook_id = $1", hook.id)
        row = await conn.fetchrow(
            "SELECT phone, first_name, board_id FROM contacts WHERE id = $1",
            uuid.UUID(first["contact_id"]),
        )
    finally:
        await conn.close()
    assert leads == 2
    assert (row["phone"], row["first_name"], row["board_id"]) == ("+16266633445", "Ben", board)
