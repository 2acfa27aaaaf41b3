"""H2 through the whole pipeline: garbage bytes and a well-formed event of a schema
version this build does not read, published straight onto the raw, outcomes and alerts
topics (skipping every check of the gateway). Every consumer dead-letters each of them
with its reason, commits, and goes on: a lead sent afterwards is processed, counted and
archived, and every group's lag is 0 with every service ready."""

from __future__ import annotations

import uuid
from collections import Counter

import aiohttp
import orjson
import pytest

from shared import topics
from shared.events import SCHEMA_VERSION
from shared.settings import CommonSettings
from tests.support.events import publish_events
from tests.support.ingest import create_webhook
from tests.support.pipeline import running_pipeline
from tests.support.polling import eventually
from tests.support.topics import read_json

pytestmark = pytest.mark.e2e

GARBAGE = b"\xff\x00 not an event {"


def _future_event(kind: str) -> bytes:
    """An event as a later build might write it: well-formed, of an unknown version."""
    return orjson.dumps(
        {
            "type": kind,
            "schema_version": SCHEMA_VERSION + 1,
            "event_id": str(uuid.uuid4()),
            "request_id": str(uuid.uuid4()),
            "workspace_id": str(uuid.uuid4()),
            "webhook_id": str(uuid.uuid4()),
        }
    )


@pytest.mark.timeout(600)
async def test_garbage_and_unknown_versions_on_every_topic_are_dead_lettered(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url, region="US")
    async with running_pipeline(settings, ip_rate_per_minute=0) as pipe:
        for logical, kind in (
            (topics.RAW, "lead.received"),
            (topics.OUTCOMES, "lead.processed"),
            (topics.ALERTS, "alert.performance"),
        ):
            await publish_events(
                settings, [GARBAGE, _future_event(kind)], logical=logical, key="poison"
            )
        # Six consumers read those topics: the processor (raw), analytics, the notifier and
        # the archiver (outcomes), the notifier (alerts): two dead letters each.
        dead = await read_json(settings, topics.DEADLETTER, min_count=10, deadline_s=120)
        by_source = Counter((d["source_topic"], d["reason_code"]) for d in dead)
        groups = {(d["source_topic"], d["group_id"]) for d in dead}

        async with (
            aiohttp.ClientSession() as http,
            http.post(
                pipe.gateway.hook_url(hook),
                json={"phone_number": "+14155550123", "firstname": "After"},
                headers={"Prefer": "wait=10"},
            ) as resp,
        ):
            answer = await resp.json()
        await eventually(
            pipe.settled, deadline_s=120, interval_s=1.0, what="every lag 0, every service ready"
        )
        _, figures = await eventually(
            lambda: pipe.analytics.get(f"/analytics/webhooks/{hook.id}"),
            until=lambda r: r[0] == 200 and r[1]["metrics"]["successful_requests"] == 1,
            deadline_s=60,
            what="the later lead counted",
        )
    assert resp.status == 200 and answer["status"] == "processed", answer
    assert figures["metrics"]["successful_requests"] == 1
    assert {t for t, _ in groups} == {topics.RAW, topics.OUTCOMES, topics.ALERTS}
    assert len({g for t, g in groups if t == topics.OUTCOMES}) == 3, groups
    for logical in (topics.RAW, topics.OUTCOMES, topics.ALERTS):
        codes = {code for (t, code) in by_source if t == logical}
        assert codes == {"undecodable", "unknown_version"}, (logical, by_source)
    # Every dead letter says why; none of them was retried for ever.
    assert all(d["reason"] and d["reason_code"] for d in dead)
    print(f"[H2] dead letters by source and reason: {dict(by_source)}")
