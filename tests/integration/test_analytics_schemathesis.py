"""schemathesis against analytics' own /openapi.json: 0 responses >= 500.

Analytics runs in this process (real Kafka and Postgres) with a few outcomes counted;
schemathesis runs as its CLI in a subprocess against it. The id path parameters are
pinned to a counted webhook and its workspace, an unknown id and a malformed one. The
live stream gets only the unknown and the malformed id (a stream of a real workspace
answers until the client goes away, which a request timeout would count as a failure).
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest

from shared.settings import CommonSettings
from tests.support.analytics import (
    analytics_settings,
    running_analytics,
    seed_webhooks,
    wait_total,
)
from tests.support.events import failed, processed, publish_events, rejected
from tests.support.schemathesis import pin_path_ids, run_schemathesis

pytestmark = pytest.mark.integration

STREAM = "/analytics/workspaces/{workspace_id}/stream"


async def test_schemathesis_finds_no_server_errors(
    settings: CommonSettings, tmp_path: Path
) -> None:
    ws, wh = uuid.uuid4(), uuid.uuid4()
    await seed_webhooks(settings.database_url, ws, "Acme Solar", {wh: "LeadConduit"})
    await publish_events(
        settings, [processed(ws, wh), processed(ws, wh), failed(ws, wh), rejected(ws, wh)]
    )
    async with running_analytics(analytics_settings(settings)) as svc:
        await wait_total(svc, wh, 4)
        status, spec = await svc.get("/openapi.json")
        assert status == 200
        pinned = copy.deepcopy(spec)
        unknown, malformed = str(uuid.uuid4()), "not-a-uuid"
        pin_path_ids(pinned, {"webhook_id": [str(wh), unknown, malformed]})
        pin_path_ids(pinned, {"workspace_id": [str(ws), unknown, malformed]})
        stream = {"paths": {STREAM: pinned["paths"][STREAM]}}
        pin_path_ids(stream, {"workspace_id": [unknown, malformed]})
        await run_schemathesis(pinned, svc.url, tmp_path, max_examples=50, headers=svc.headers())
