"""Gateway + the real processor, for what a lead buyer sets: consent evidence stored with
the lead, a lead the buyer did not order refused before it reaches the processor, and a
Facebook notification whose lead is fetched (from a fake Graph API) and processed."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from shared.db import connect
from shared.events import request_id_for
from shared.settings import CommonSettings
from tests.support.facebook import facebook_hook, fake_graph, notification
from tests.support.ingest import auth_headers, create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.processor import prepare_topics, processor_settings, processors

pytestmark = pytest.mark.e2e

CERT = "https://cert.trustedform.com/2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b"


async def _one(settings: CommonSettings, query: str, *args: Any) -> Any:
    conn = await connect(settings.database_url)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


async def post_wait(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    headers = {**headers, "Content-Type": "application/json", "Prefer": "wait=20"}
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_consent_is_stored_and_unordered_leads_never_processed(
    settings: CommonSettings,
) -> None:
    await prepare_topics(settings)
    hook = await create_webhook(
        settings.database_url,
        acceptance={"require": ["product"], "allow": {}, "require_consent": True},
    )
    async with (
        running_gateway(settings) as gw,
        processors(processor_settings(settings)),
        aiohttp.ClientSession() as http,
    ):
        lead = {
            "email": "benjie@example.com",
            "product": "Bath Remodel",
            "xxTrustedFormCertUrl": CERT,
            "tcpa_consent": "yes",
            "tcpa_consent_at": "2026-11-30T17:04:05Z",
        }
        status, done = await post_wait(http, gw.hook_url(hook), orjson.dumps(lead), {})
        assert status == 200 and done["status"] == "processed", done
        row = await _one(
            settings,
            "SELECT consent FROM leads WHERE request_id = $1::uuid",
            done["request_id"],
        )
        assert row is not None and row["consent"]["trustedform_cert_url"] == CERT
        assert row["consent"]["tcpa_consent"] is True

        unordered = {"email": "ann@example.com", "product": "Bath Remodel"}
        status, refused = await post_wait(http, gw.hook_url(hook), orjson.dumps(unordered), {})
        assert status == 400 and refused["errors"][0]["code"] == "not_accepted"
        count = await _one(
            settings, "SELECT count(*) AS n FROM leads WHERE webhook_id = $1", hook.id
        )
        assert count["n"] == 1


async def test_a_facebook_lead_is_fetched_and_processed(settings: CommonSettings) -> None:
    await prepare_topics(settings)
    hook = await facebook_hook(settings)
    async with (
        fake_graph() as graph,
        running_gateway(settings, facebook_graph_url=graph.url) as gw,
        processors(processor_settings(settings)),
        aiohttp.ClientSession() as http,
    ):
        body = orjson.dumps(notification("9000000007"))
        async with http.post(
            gw.hook_url(hook),
            data=body,
            headers={**auth_headers(hook, body), "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
        request_id = request_id_for(hook.id, "9000000007")

        async def status() -> Any:
            async with http.get(f"{gw.url}/webhooks/{hook.id}/requests/{request_id}") as resp:
                return resp.status, await resp.json()

        _, stored = await eventually(
            status,
            until=lambda r: r[0] == 200 and r[1]["status"] == "processed",
            deadline_s=60,
            what="the Facebook lead processed",
        )
        assert stored["result"]["is_new_contact"] is True
        contact = await _one(
            settings,
            "SELECT c.email, c.first_name FROM contacts c JOIN leads l ON l.contact_id = c.id "
            "WHERE l.request_id = $1",
            request_id,
        )
        assert (contact["email"], contact["first_name"]) == ("benjie7@example.com", "Benjie")
