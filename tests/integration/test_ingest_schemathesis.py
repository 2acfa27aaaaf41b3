"""S8: schemathesis against the gateway's own /openapi.json: 0 responses >= 500.

The gateway runs in this process (real Kafka and Postgres); schemathesis runs as its CLI
in a subprocess against it. The webhook id path parameter is pinned to a real webhook
(auth none, so generated bodies reach mapping and validation), an unknown id and a
malformed one, so the run exercises the real paths rather than only 404s.
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 100


async def test_s8_schemathesis_finds_no_server_errors(
    settings: CommonSettings, tmp_path: Path
) -> None:
    hook = await create_webhook(settings.database_url)
    fb = await create_webhook(settings.database_url, template="facebook", verify_token="tok")
    async with running_gateway(settings, ip_rate_per_minute=0) as gw:
        async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/openapi.json") as resp:
            spec = await resp.json()
        pinned = copy.deepcopy(spec)
        ids = [str(hook.id), str(fb.id), str(uuid.uuid4()), "not-a-uuid"]
        for path in pinned["paths"].values():
            for op in path.values():
                for param in op.get("parameters", []):
                    if param["in"] == "path" and param["name"] == "webhook_id":
                        param["schema"] = {"type": "string", "enum": ids}
        spec_file = tmp_path / "openapi.json"
        spec_file.write_bytes(orjson.dumps(pinned))
        st = Path(sys.executable).with_name("st")
        proc = await asyncio.create_subprocess_exec(
            str(st),
            "run",
            str(spec_file),
            "--url",
            gw.url,
            "--checks",
            os.environ.get("LEADWIRE_ST_CHECKS", "not_a_server_error"),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "2",
            # Stateful runs need links between operations; this API has none worth following.
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-deterministic",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "10",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        text = out.decode(errors="replace")
        print(text[-4000:])
        assert proc.returncode == 0, f"schemathesis found server errors:\n{text[-6000:]}"
        assert "passed" in text
