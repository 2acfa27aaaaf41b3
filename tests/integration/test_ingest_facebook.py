"""Facebook Lead Ads as Facebook sends them, through the running gateway: the signed
notification is answered at once, each leadgen change becomes a lead whose fields are
fetched from a fake Graph API (aiohttp on 127.0.0.1) with its error answers and a slow
one, a lead whose fetch fails for good is failed with the reason and comes back through
``leadwire deadletter retry``."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from shared import topics
from shared.events import decode_outcome, decode_raw, request_id_for
from shared.kafka import Publisher
from shared.settings import CommonSettings
from tests.support.cli import arun_cli
from tests.support.facebook import PAGE_TOKEN, facebook_hook, fake_graph, notification
from tests.support.ingest import auth_headers, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_json, read_topic

pytestmark = pytest.mark.integration


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(
        url, data=body, headers={"Content-Type": "application/json", **headers}
    ) as resp:
        return resp.status, await resp.json()


async def test_a_notification_becomes_fetched_leads(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    hook = await facebook_hook(settings)
    async with (
        fake_graph() as graph,
        running_gateway(
            settings,
            facebook_graph_url=graph.url,
            facebook_fetch_timeout_s=0.5,
            facebook_fetch_retry_s=30,
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        graph.scripts = {
            "9000000001": ["ok"],
            "9000000002": ["500", "500", "ok"],
            "9000000003": ["throttled", "429", "ok"],
            "9000000004": ["slow", "ok"],
            "9000000005": ["gone"],
        }
        ids = [f"900000000{n}" for n in range(1, 6)]
        body = orjson.dumps(notification(*ids))
        status, data = await post(http, gw.hook_url(hook), body, auth_headers(hook, body))
        assert status == 200, data
        assert [r["leadgen_id"] for r in data["requests"]] == ids
        expected = {lid: request_id_for(hook.id, lid) for lid in ids}
        assert [r["request_id"] for r in data["requests"]] == [str(expected[i]) for i in ids]

        # A forged notification is refused and fetches nothing.
        status, _ = await post(
            http, gw.hook_url(hook), body, {"X-Hub-Signature-256": "sha256=" + "0" * 64}
        )
        assert status == 401

        async def raw() -> list[Any]:
            return [decode_raw(m) for m in await read_topic(settings, topics.RAW)]

        leads = await eventually(
            raw, until=lambda r: len(r) >= 4, deadline_s=60, what="four fetched leads"
        )
        by_key = {e.idempotency_key: e for e in leads}
        assert set(by_key) == set(ids[:4])
        for n, lid in enumerate(ids[:4], start=1):
            event = by_key[lid]
            assert event.request_id == expected[lid] and event.source == "facebook"
            assert event.lead.email == f"benjie{n}@example.com"
            assert event.lead.phone == "+16266633444"
            assert (event.lead.first_name, event.lead.last_name) == ("Benjie", f"Malinao{n}")
            assert event.lead.custom["leadgen_id"] == lid
            assert event.request.payload["page_id"] == "112233"
            assert "facebook_fetch" in event.steps
        assert graph.calls["9000000002"] == 3 and graph.calls["9000000003"] == 3
        assert graph.calls["9000000004"] == 2  # the slow answer timed out, then one more
        assert graph.tokens == {PAGE_TOKEN}

        # The lead Facebook says does not exist: failed at once, with the reason.
        gone = expected["9000000005"]

        async def failures() -> list[Any]:
            outcomes = [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]
            return [o for o in outcomes if o.type == "lead.failed"]

        (failed,) = await eventually(
            failures, until=lambda f: len(f) == 1, deadline_s=30, what="the failed fetch"
        )
        assert failed.request_id == gone and failed.error.type == "facebook_fetch_failed"
        assert "400 (code 100, GraphMethodException)" in failed.error.message
        assert PAGE_TOKEN not in failed.model_dump_json()
        assert graph.calls["9000000005"] == 1

        async def status_of() -> Any:
            async with http.get(f"{gw.url}/webhooks/{hook.id}/requests/{gone}") as resp:
                return resp.status, await resp.json()

        _, stored = await eventually(
            status_of, until=lambda r: r[0] == 200, deadline_s=15, what="the failed row"
        )
        assert stored["status"] == "failed"
        assert stored["result"]["error"]["type"] == "facebook_fetch_failed"

        # Replayed: the dead letter goes back to the fetcher, which now gets the lead.
        letters = await eventually(
            lambda: read_json(settings, topics.DEADLETTER),
            until=lambda d: len(d) == 1,
            deadline_s=15,
            what="the dead letter",
        )
        assert letters[0]["source_topic"] == topics.FETCH
        assert letters[0]["reason_code"] == "facebook_fetch_failed"
        graph.scripts["9000000005"] = ["ok"]
        listed = await arun_cli(settings_env, "deadletter", "list", "--since", "1h")
        (letter,) = [d for d in listed["deadletters"] if d.get("request_id") == str(gone)]
        sent = await arun_cli(settings_env, "deadletter", "retry", letter["id"])
        assert sent["summary"]["retried"] == 1
        leads = await eventually(
            raw, until=lambda r: len(r) >= 5, deadline_s=30, what="the replayed lead"
        )
        (replayed,) = [e for e in leads if e.request_id == gone]
        assert replayed.lead.email == "benjie5@example.com"


async def test_each_change_once_and_other_fields_ignored(settings: CommonSettings) -> None:
    hook = await facebook_hook(settings)
    async with (
        fake_graph() as graph,
        running_gateway(settings, facebook_graph_url=graph.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        doc = notification("9000000001", "9000000001", "9000000002")
        doc["entry"][0]["changes"].append({"field": "feed", "value": {"post_id": "1"}})
        doc["entry"].append({"id": "1", "changes": [{"field": "leadgen", "value": {"x": 1}}]})
        body = orjson.dumps(doc)
        status, data = await post(http, gw.hook_url(hook), body, auth_headers(hook, body))
        assert status == 200
        assert [r["leadgen_id"] for r in data["requests"]] == ["9000000001", "9000000002"]
        # Facebook's redelivery maps to the same request ids.
        status, again = await post(http, gw.hook_url(hook), body, auth_headers(hook, body))
        assert status == 200 and again["requests"] == data["requests"]
        fetched = await read_topic(settings, topics.FETCH)
        assert {decode_raw(m).request_id for m in fetched} == {
            uuid.UUID(r["request_id"]) for r in data["requests"]
        }


async def test_garbage_on_the_fetch_topic_is_dead_lettered_and_the_next_lead_fetched(
    settings: CommonSettings,
) -> None:
    hook = await facebook_hook(settings)
    async with (
        fake_graph() as graph,
        running_gateway(settings, facebook_graph_url=graph.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        publisher = Publisher(settings, client_id="test-hostile")
        await publisher.start()
        try:
            key = str(hook.workspace_id)
            await publisher.publish(topics.FETCH, b"\xff not an event", key=key)
            await publisher.publish(topics.FETCH, b'{"type": "lead.received"}', key=key)
        finally:
            await publisher.stop()
        body = orjson.dumps(notification("9000000001"))
        status, _ = await post(http, gw.hook_url(hook), body, auth_headers(hook, body))
        assert status == 200
        (lead,) = await eventually(
            lambda: read_topic(settings, topics.RAW),
            until=lambda r: len(r) == 1,
            deadline_s=30,
            what="the lead after the garbage",
        )
        assert decode_raw(lead).lead.email == "benjie1@example.com"
        letters = await eventually(
            lambda: read_json(settings, topics.DEADLETTER),
            until=lambda d: len(d) == 2,
            deadline_s=15,
            what="two dead letters",
        )
        assert {d["source_topic"] for d in letters} == {topics.FETCH}
