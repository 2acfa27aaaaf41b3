"""The management API's suppression list and suppressed mode against real Postgres: add
(normalized, counted, a refused value named), check, list (digests only), remove, the
workspace's mode; a read key may not write, another workspace's key sees nothing."""

from __future__ import annotations

from typing import Any

import pytest

from services.api import admin
from services.api.repository import PostgresRepository
from shared.db import connect
from shared.settings import CommonSettings
from tests.support.api import api_settings, make_key, running_api

pytestmark = pytest.mark.integration


async def _tenants(database_url: str) -> dict[str, Any]:
    conn = await connect(database_url)
    try:
        repo = PostgresRepository(conn)
        out: dict[str, Any] = {}
        for name in ("a", "b"):
            ws = await admin.create_workspace(repo, f"ws-{name}", "US")
            out[name] = {
                "ws": ws["id"],
                "read": await make_key(repo, ws["id"], "read"),
                "manage": await make_key(repo, ws["id"], "manage"),
            }
        return out
    finally:
        await conn.close()


async def test_the_suppression_list_through_the_api(settings: CommonSettings) -> None:
    t = await _tenants(settings.database_url)
    base = f"/v1/workspaces/{t['a']['ws']}"
    async with running_api(api_settings(settings)) as api:
        manage, read = api.client(t["a"]["manage"]), api.client(t["a"]["read"])
        added = await manage.ok(
            "POST",
            f"{base}/suppressions",
            {"phones": ["(626) 663-3444", "+16266633444", "12"], "emails": ["No@Acme.io"]},
        )
        assert (added["read"], added["added"], added["already"], added["invalid"]) == (4, 2, 1, 1)
        assert added["errors"] == [{"line": 3, "field": "phone", "code": "invalid_phone"}]
        listed = await read.ok("GET", f"{base}/suppressions")
        assert listed["total"] == 2 and all(len(i["sha256"]) == 64 for i in listed["items"])
        assert "6266633444" not in str(listed)
        one = await read.ok("GET", f"{base}/suppressions?kind=email&value=no@acme.io")
        assert one["total"] == 1
        half = await read.get(f"{base}/suppressions?kind=email")
        assert half.status == 400
        assert (await read.post(f"{base}/suppressions", {"emails": ["a@acme.io"]})).status == 403
        assert (await manage.post(f"{base}/suppressions", {})).status == 400
        gone = await manage.ok("POST", f"{base}/suppressions/remove", {"emails": ["NO@acme.io"]})
        assert gone == {"removed": 1}
        ws = await manage.ok("PATCH", base, {"suppressed_mode": "flag"})
        assert ws["suppressed_mode"] == "flag"
        assert (await manage.call("PATCH", base, {"suppressed_mode": "maybe"})).status == 400
        stranger = api.client(t["b"]["manage"])
        assert (await stranger.get(f"{base}/suppressions")).status == 404
        assert (
            await stranger.post(f"{base}/suppressions", {"emails": ["x@acme.io"]})
        ).status == 404
