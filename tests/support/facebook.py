"""A fake Graph API (aiohttp on 127.0.0.1) answering Facebook lead fetches as scripted,
Facebook's notification body, and a facebook webhook for the gateway's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.settings import CommonSettings
from tests.support.ingest import Hook, create_webhook
from tests.support.net import free_port

PAGE_TOKEN = "EAAGm0PX4ZCpsBAFAKE"


def lead_object(leadgen_id: str, n: int) -> dict[str, Any]:
    return {
        "id": leadgen_id,
        "created_time": "2026-11-30T17:04:05+0000",
        "ad_id": "23850000000000001",
        "form_id": "987654321098765",
        "field_data": [
            {"name": "full_name", "values": [f"Benjie Malinao{n}"]},
            {"name": "email", "values": [f"benjie{n}@example.com"]},
            {"name": "phone_number", "values": ["+16266633444"]},
        ],
    }


@dataclass
class FakeGraph:
    """Answers per leadgen id: a script of answers (the last repeats)."""

    url: str = ""
    scripts: dict[str, list[str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    tokens: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        leadgen_id = request.match_info["leadgen_id"]
        self.tokens.add(request.query.get("access_token", ""))
        script = self.scripts.get(leadgen_id, ["ok"])
        answer = script[min(self.calls[leadgen_id], len(script) - 1)]
        self.calls[leadgen_id] += 1
        if answer == "slow":
            await asyncio.sleep(5)
        if answer == "500":
            return web.json_response({"error": {"message": "x", "code": 2}}, status=500)
        if answer == "429":
            return web.json_response({}, status=429)
        if answer == "throttled":  # Graph's application request limit (code 4), as a 400
            return web.json_response(
                {"error": {"message": "limit", "type": "OAuthException", "code": 4}}, status=400
            )
        if answer == "gone":
            return web.json_response(
                {
                    "error": {
                        "message": "does not exist",
                        "type": "GraphMethodException",
                        "code": 100,
                    }
                },
                status=400,
            )
        return web.json_response(lead_object(leadgen_id, int(leadgen_id[-1])))


@contextlib.asynccontextmanager
async def fake_graph() -> AsyncIterator[FakeGraph]:
    graph = FakeGraph()
    app = web.Application()
    app.router.add_get("/v21.0/{leadgen_id}", graph.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    graph.url = f"http://127.0.0.1:{port}/v21.0"
    try:
        yield graph
    finally:
        await runner.cleanup()


def notification(*leadgen_ids: str, page_id: str = "112233") -> dict[str, Any]:
    change = [
        {
            "field": "leadgen",
            "value": {
                "leadgen_id": lid,
                "page_id": page_id,
                "form_id": "987654321098765",
                "ad_id": "23850000000000001",
                "created_time": 1764522245,
            },
        }
        for lid in leadgen_ids
    ]
    return {
        "object": "page",
        "entry": [{"id": page_id, "time": 1764522245, "changes": change}],
    }


async def facebook_hook(settings: CommonSettings) -> Hook:
    return await create_webhook(
        settings.database_url,
        template="facebook",
        auth_mode="github",
        secret="0123456789abcdef0123456789abcdef",
        verify_token="tok-fb",
        facebook_page_token=PAGE_TOKEN,
    )
