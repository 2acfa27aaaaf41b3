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
from shared.events import decode_raw
from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway
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
