"""The gateway's lead-buyer features against real Kafka and Postgres: senders signing
the Standard Webhooks way under either header set, acceptance criteria and consent
evidence (issue 18)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from shared import topics
from shared.events import decode_outcome, decode_raw, request_id_for
from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration

LEAD = {
    "firstname": "Benjie",
    "lastname": "Malinao",
    "phone_number": "(626) 663-3444",
    "email": "benjie@example.com",
    "product": "Bath Remodel",
}


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    ) as resp:
        return resp.status, await resp.json()


def signed(secret: str, body: bytes, msg_id: str, *, prefix: str) -> dict[str, str]:
    """Headers the official Standard Webhooks signer makes, under ``prefix``-* names."""
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(now.timestamp())),
        f"{prefix}-signature": signature,
    }


@pytest.mark.parametrize("prefix", ["webhook", "svix"])
async def test_both_header_sets_verify_with_the_official_signer(
    settings: CommonSettings, prefix: str
) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    assert hook.secret is not None
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = orjson.dumps(LEAD)
        headers = signed(hook.secret, body, "msg_2sXb", prefix=prefix)
        status, data = await post(http, gw.hook_url(hook), body, headers)
        assert status == 202, data
        data_id = data["request_id"]
        # The sender's message id is the idempotency key under either name.
        assert data_id == str(request_id_for(hook.id, "msg_2sXb"))
        status, again = await post(http, gw.hook_url(hook), body, headers)
        assert status in (200, 202) and again["status"] == "duplicate"

        forged = {
            **headers,
            f"{prefix}-signature": signed("whsec_" + "A" * 32, body, "msg_2sXb", prefix=prefix)[
                f"{prefix}-signature"
            ],
        }
        status, data = await post(http, gw.hook_url(hook), body, forged)
        assert status == 401 and data["errors"][0]["code"] == "invalid_signature"
        assert data["errors"][0]["message"] == f"no {prefix}-signature matches"

        old = {**headers, f"{prefix}-timestamp": str(int(time.time()) - 3600)}
        status, data = await post(http, gw.hook_url(hook), body, old)
        assert status == 401 and data["errors"][0]["code"] == "timestamp_out_of_tolerance"

        (event,) = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert str(event.request_id) == data_id
        assert f"{prefix}-signature" not in event.request.headers


CERT = "https://cert.trustedform.com/2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b"
ORDERED = {"require": ["product"], "allow": {"state": ["CA", "NV"]}, "require_consent": True}


async def test_a_lead_the_buyer_did_not_order_is_refused_as_not_accepted(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url, acceptance=ORDERED)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = orjson.dumps({**LEAD, "product": "", "state": "TX"})
        status, data = await post(http, gw.hook_url(hook), body)
        assert status == 400 and data["status"] == "rejected", data
        assert [(e["field"], e["code"]) for e in data["errors"]] == [
            ("product", "not_accepted"),
            ("state", "not_accepted"),
            ("consent", "not_accepted"),
        ]
        assert "TX" not in orjson.dumps(data).decode()  # the lead's value is never echoed

        async def outcomes() -> list[Any]:
            return [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]

        (rejected,) = await eventually(
            outcomes, until=lambda o: len(o) == 1, deadline_s=15, what="rejection outcome"
        )
        assert rejected.type == "lead.rejected" and rejected.reason == "not_accepted"
        assert rejected.status_code == 400 and len(rejected.errors) == 3

        async def status_of() -> tuple[int, Any]:
            async with http.get(f"{gw.url}/webhooks/{hook.id}/requests/{data['request_id']}") as r:
                return r.status, await r.json()

        _, stored = await eventually(
            status_of, until=lambda r: r[0] == 200, deadline_s=15, what="status row"
        )
        assert stored["status"] == "rejected" and stored["result"]["reason"] == "not_accepted"

        # What the buyer ordered passes (values compared trimmed and case-insensitively).
        ordered = {**LEAD, "state": " ca ", "trustedform_cert_url": CERT}
        status, data = await post(http, gw.hook_url(hook), orjson.dumps(ordered))
        assert status == 202, data
        (event,) = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert event.lead.consent is not None
        assert event.lead.consent.trustedform_cert_url == CERT


async def test_consent_evidence_is_typed_and_carried(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, template="leadconduit")
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        lead = {
            "email": "benjie@example.com",
            "trustedform_cert_url": CERT,
            "leadid_token": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
            "tcpa_consent": "yes",
            "tcpa_consent_text": "By clicking  Submit you agree ...",
            "tcpa_consent_timestamp": "2026-11-30T17:04:05Z",
        }
        status, data = await post(http, gw.hook_url(hook), orjson.dumps(lead))
        assert status == 202, data
        (event,) = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        consent = event.lead.consent
        assert consent is not None
        assert consent.leadid_token == "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D"
        assert consent.tcpa_consent is True
        assert consent.tcpa_consent_text == "By clicking Submit you agree ..."
        assert consent.tcpa_consent_at == datetime(2026, 11, 30, 17, 4, 5, tzinfo=UTC)
        assert "trustedform_cert_url" not in event.lead.custom

        bad = {**lead, "trustedform_cert_url": "https://example.com/cert", "leadid_token": "x"}
        status, data = await post(http, gw.hook_url(hook), orjson.dumps(bad))
        assert status == 400, data
        assert {(e["field"], e["code"]) for e in data["errors"]} == {
            ("trustedform_cert_url", "invalid_trustedform_cert_url"),
            ("leadid_token", "invalid_leadid_token"),
        }
