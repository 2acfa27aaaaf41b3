"""Gateway + the real processor: ``Prefer: wait`` answers with the seed's synchronous body,
a vendor retry points at the first request, and the status endpoint follows the request."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.ingest import GENERIC_BODY, auth_headers, create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.processor import prepare_topics, processor_settings, processors

pytestmark = pytest.mark.e2e


async def test_prefer_wait_returns_the_seed_body_from_the_processor(
    settings: CommonSettings,
) -> None:
    await prepare_topics(settings)
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    async with (
        running_gateway(settings) as gw,
        processors(processor_settings(settings)),
        aiohttp.ClientSession() as http,
    ):
        body = orjson.dumps(GENERIC_BODY)
        headers = {
            **auth_headers(hook, body, msg_id="msg_wait_1"),
            "Content-Type": "application/json",
            "Prefer": "wait=20",
        }
        async with http.post(gw.hook_url(hook), data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            first = await resp.json()
        assert first["success"] is True and first["message"] == "Contact created"
        assert first["is_new_contact"] is True and first["match_type"] == "new"
        assert first["webhook_id"] == str(hook.id)
        assert first["processing_time"].endswith("ms")
        assert set(first) >= {
            "success",
            "message",
            "contact_id",
            "webhook_id",
            "rule_applied",
            "match_type",
            "is_new_contact",
            "processing_time",
            "request_id",
        }
        uuid.UUID(first["contact_id"])

        # The same lead again under a new key: an update via the CRM id.
        body2 = orjson.dumps({**GENERIC_BODY, "product": "Kitchen"})
        headers2 = {
            **auth_headers(hook, body2, msg_id="msg_wait_2"),
            "Content-Type": "application/json",
            "Prefer": "wait=20",
        }
        async with http.post(gw.hook_url(hook), data=body2, headers=headers2) as resp:
            second = await resp.json()
        assert resp.status == 200 and second["message"] == "Contact updated via crm_id match"
        assert second["contact_id"] == first["contact_id"] and second["is_new_contact"] is False

        # A retry of the first: points at the first request, makes no second lead.
        async with http.post(
            gw.hook_url(hook),
            data=body,
            headers={
                **auth_headers(hook, body, msg_id="msg_wait_1"),
                "Content-Type": "application/json",
            },
        ) as resp:
            retry = await resp.json()
        # (Answered from this process's memory of accepting it: 202, no database read.)
        assert resp.status in (200, 202) and retry["status"] == "duplicate"
        assert retry["request_id"] == first["request_id"]

        async with http.get(f"{gw.url}/webhooks/{hook.id}/requests/{first['request_id']}") as resp:
            status = await resp.json()
        assert resp.status == 200 and status["status"] == "processed"
        assert status["result"]["contact_id"] == first["contact_id"]
        assert "6266633444" not in orjson.dumps(status).decode()

        conn = await connect(settings.database_url)
        try:

            async def leads() -> int:
                return int(
                    await conn.fetchval("SELECT count(*) FROM leads WHERE webhook_id = $1", hook.id)
                )

            assert (
                await eventually(leads, until=lambda n: n == 2, deadline_s=10, what="two leads")
                == 2
            )
        finally:
            await conn.close()
