"""S8: schemathesis against the gateway's own /openapi.json: 0 responses >= 500.

The gateway runs in this process (real Kafka and Postgres); schemathesis runs as its CLI
in a subprocess against it. The webhook id path parameter is pinned to a real webhook
(auth none, so generated bodies reach mapping and validation), an unknown id and a
malformed one, so the run exercises the real paths rather than only 404s.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest

from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway
from tests.support.schemathesis import pin_path_ids, run_schemathesis

pytestmark = pytest.mark.integration


async def test_s8_schemathesis_finds_no_server_errors(
    settings: CommonSettings, tmp_path: Path
) -> None:
    hook = await create_webhook(settings.database_url)
    fb = await create_webhook(settings.database_url, template="facebook", verify_token="tok")
    async with running_gateway(settings, ip_rate_per_minute=0) as gw:
        async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/openapi.json") as resp:
            spec = await resp.json()
        ids = [str(hook.id), str(fb.id), str(uuid.uuid4()), "not-a-uuid"]
        pin_path_ids(spec, {"webhook_id": ids})
        await run_schemathesis(spec, gw.url, tmp_path)
