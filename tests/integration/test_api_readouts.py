"""The management API's read-outs on real Kafka and Postgres: a workspace's and a
webhook's figures as analytics counted them, and the dead letters naming a workspace
(listed, shown, retried once with a dry run first); another workspace's key sees none of
it (404), a read key may not retry (403), and a dead letter that names no workspace is no
workspace's."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from services.api import admin
from services.api.repository import PostgresRepository
from shared import topics
from shared.db import connect
from shared.kafka import Publisher, deadletter, ensure_topics
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, wait_total
from tests.support.api import api_settings, make_key, running_api
from tests.support.events import failed, processed, publish_events, rejected
from tests.support.topics import read_records

pytestmark = pytest.mark.integration


async def _tenants(database_url: str) -> dict[str, Any]:
    """Workspaces A and B with a webhook each, and their keys."""
    conn = await connect(database_url)
    try:
        repo = PostgresRepository(conn)
        out: dict[str, Any] = {}
        for name in ("a", "b"):
            ws = await admin.create_workspace(repo, f"ws-{name}", "US")
            hook = await admin.create_webhook(
                repo, ws["id"], admin.WebhookSpec(name="form", auth_mode="none"), public_url="u"
            )
            out[name] = {
                "ws": ws["id"],
                "hook": hook["id"],
                "read": await make_key(repo, ws["id"], "read"),
                "manage": await make_key(repo, ws["id"], "manage"),
            }
        out["operator"] = await make_key(repo, None, "read")
        return out
    finally:
        await conn.close()


async def test_a_workspaces_figures_through_the_api(settings: CommonSettings) -> None:
    t = await _tenants(settings.database_url)
    a, b = t["a"], t["b"]
    await publish_events(
        settings,
        [processed(a["ws"], a["hook"], duration_ms=20.0) for _ in range(3)]
        + [failed(a["ws"], a["hook"]), rejected(a["ws"], a["hook"]), processed(b["ws"], b["hook"])],
    )
    async with (
        running_analytics(analytics_settings(settings)) as counting,
        running_api(api_settings(settings)) as api,
    ):
        await wait_total(counting, a["hook"], 5)
        mine = api.client(a["read"])
        base = f"/v1/workspaces/{a['ws']}"
        hook = await mine.ok("GET", f"{base}/webhooks/{a['hook']}/analytics")
        m = hook["metrics"]
        assert (m["total_requests"], m["successful_requests"]) == (5, 3)
        assert (m["failed_requests"], m["rejected_requests"]) == (1, 1)
        assert m["p50_processing_time"] is not None and hook["name"] == "form"
        whole = await mine.ok("GET", f"{base}/analytics")
        assert whole["metrics"]["total_requests"] == 5
        assert [w["webhook_id"] for w in whole["webhooks"]] == [str(a["hook"])]
        # The same figures as analytics' own API answers.
        _status, direct = await counting.get(f"/analytics/webhooks/{a['hook']}")
        assert direct["metrics"]["total_requests"] == m["total_requests"]

        # B's webhook under A's path, and A's paths with B's key: 404.
        foreign = await mine.get(f"{base}/webhooks/{b['hook']}/analytics")
        nowhere = await mine.get(f"{base}/webhooks/{uuid.uuid4()}/analytics")
        assert foreign.status == nowhere.status == 404
        stranger = api.client(b["read"])
        for path in (f"{base}/analytics", f"{base}/webhooks/{a['hook']}/analytics"):
            assert (await stranger.get(path)).status == 404
        assert (await api.client(None).get(f"{base}/analytics")).status == 401


async def _dead_letters(settings: CommonSettings, t: dict[str, Any]) -> list[str]:
    """Three dead letters on the consumers' topic: one of A's outcomes, one of B's, and
    garbage naming no workspace. Their ids, in that order."""
    await ensure_topics(settings, [topics.DEADLETTER, topics.OUTCOMES, topics.NOTIFY_DEADLETTER])
    payloads = [
        orjson.dumps(
            {
                "request_id": str(uuid.uuid4()),
                "workspace_id": str(t[n]["ws"]),
                "webhook_id": str(t[n]["hook"]),
            }
        )
        for n in ("a", "b")
    ] + [b"\xff garbage"]
    ids = []
    async with Publisher(settings) as pub:
        for offset, payload in enumerate(payloads):
            entry = deadletter.entry(
                source_topic=topics.OUTCOMES,
                partition=0,
                offset=offset,
                key=b"k",
                payload=payload,
                reason="permanent: ValueError: the store refuses this value",
                group_id="g-api",
                error_class="ValueError",
            )
            meta = await pub.publish(topics.DEADLETTER, orjson.dumps(entry), key="k")
            ids.append(f"{topics.DEADLETTER}:{meta.partition}:{meta.offset}")
    return ids


async def test_a_workspaces_dead_letters_through_the_api(settings: CommonSettings) -> None:
    t = await _tenants(settings.database_url)
    a_id, b_id, garbage_id = await _dead_letters(settings, t)
    async with running_api(api_settings(settings)) as api:
        a_base, b_base = f"/v1/workspaces/{t['a']['ws']}", f"/v1/workspaces/{t['b']['ws']}"
        reader = api.client(t["a"]["read"])
        listed = await reader.ok("GET", f"{a_base}/deadletters", params={"since": "1h"})
        assert [d["id"] for d in listed["items"]] == [a_id]
        assert listed["by_reason"] == {"permanent": 1} and "reason" not in listed["items"][0]
        theirs = await api.client(t["b"]["read"]).ok("GET", f"{b_base}/deadletters")
        assert [d["id"] for d in theirs["items"]] == [b_id]  # garbage is no workspace's

        shown = await reader.ok("GET", f"{a_base}/deadletters/{a_id}")
        assert shown["target"] == topics.OUTCOMES and shown["payload"]["workspace_id"] == str(
            t["a"]["ws"]
        )
        assert shown["reason"].startswith("permanent: ValueError")
        for other in (b_id, garbage_id, "deadletter:0:99999", "not-an-id"):
            assert (await reader.get(f"{a_base}/deadletters/{other}")).status == 404, other
        assert (await api.client(t["b"]["read"]).get(f"{a_base}/deadletters/{a_id}")).status == 404

        # A read key may not retry; a manage key dry-runs first, then sends it back once.
        refused = await reader.post(f"{a_base}/deadletters/retry", {"all": True})
        assert refused.status == 403
        manager = api.client(t["a"]["manage"])
        dry = await manager.ok("POST", f"{a_base}/deadletters/retry", {"all": True, "since": "1h"})
        assert dry["dry_run"] is True and dry["retried"] == [
            {"id": a_id, "target": topics.OUTCOMES}
        ]
        assert await read_records(settings, topics.OUTCOMES) == []
        foreign = await manager.post(
            f"{a_base}/deadletters/retry", {"ids": [b_id], "dry_run": False}
        )
        assert foreign.status == 404
        done = await manager.ok(
            "POST", f"{a_base}/deadletters/retry", {"ids": [a_id], "dry_run": False}
        )
        assert [r["id"] for r in done["retried"]] == [a_id]
        again = await manager.ok(
            "POST", f"{a_base}/deadletters/retry", {"all": True, "dry_run": False}
        )
        assert again["summary"] == {"retried": 0, "skipped": 1}
        [back] = await read_records(settings, topics.OUTCOMES, min_count=1)
        assert orjson.loads(back.value)["workspace_id"] == str(t["a"]["ws"])
        bad = await manager.post(f"{a_base}/deadletters/retry", {})
        assert bad.status == 400 and bad.error_codes() == ["invalid"]
