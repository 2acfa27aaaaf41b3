"""The management API's vendor scorecards (GET /v1/workspaces/{id}/vendors) on real Kafka
and Postgres: the same answer as analytics' own /analytics/workspaces/{id}/vendors, and
another workspace's key sees none of it."""

from __future__ import annotations

import pytest

from services.api import admin
from services.api.repository import PostgresRepository
from shared.db import connect
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, wait_total
from tests.support.api import api_settings, make_key, running_api
from tests.support.events import failed, processed, publish_events, rejected

pytestmark = pytest.mark.integration


async def test_vendor_scorecards_through_the_management_api(settings: CommonSettings) -> None:
    conn = await connect(settings.database_url)
    try:
        repo = PostgresRepository(conn)
        mine = await admin.create_workspace(repo, "vendors-a", "US")
        theirs = await admin.create_workspace(repo, "vendors-b", "US")
        hook = await admin.create_webhook(
            repo,
            mine["id"],
            admin.WebhookSpec(name="LeadConduit", auth_mode="none"),
            public_url="u",
        )
        key = await make_key(repo, mine["id"], "read")
        stranger = await make_key(repo, theirs["id"], "read")
    finally:
        await conn.close()
    ws, hook_id = mine["id"], hook["id"]
    await publish_events(
        settings,
        [processed(ws, hook_id) for _ in range(3)]
        + [failed(ws, hook_id), rejected(ws, hook_id, reason="duplicate_lead")],
    )
    async with (
        running_analytics(analytics_settings(settings)) as counting,
        running_api(api_settings(settings)) as api,
    ):
        await wait_total(counting, hook_id, 5)
        path = f"/v1/workspaces/{ws}/vendors"
        body = await api.client(key).ok("GET", path)
        [card] = body["vendors"]
        day = card["windows"]["last_24h"]
        assert (card["name"], day["received"], day["accepted"], day["failed"]) == (
            "LeadConduit",
            5,
            3,
            1,
        )
        assert day["rejected_by_reason"]["duplicate_lead"] == 1 and day["acceptance_rate"] == 60.0
        _status, direct = await counting.get(f"/analytics/workspaces/{ws}/vendors")
        assert direct["vendors"] == body["vendors"]
        assert (await api.client(stranger).get(path)).status == 404
        assert (await api.client(None).get(path)).status == 401
