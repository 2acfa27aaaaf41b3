"""Config made with the CLI, used by a running gateway: each template's vendor example is
accepted end to end, rotated secrets work through their grace period, and CLI changes
reach the gateway within its (short) cache TTL."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest

from shared import topics
from shared.events import decode_raw
from shared.settings import CommonSettings
from shared.templates import TEMPLATES
from tests.support.cli import arun_cli
from tests.support.ingest import Hook, auth_headers, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


def hook_of(created: dict[str, Any]) -> Hook:
    """What the vendor holds, from `webhook create --json`."""
    return Hook(
        id=uuid.UUID(created["id"]),
        workspace_id=uuid.UUID(created["workspace_id"]),
        auth_mode=created["auth_mode"],
        secret=created["secret"],
        username=created["basic_username"],
        api_key_header=created["api_key_header"] or "X-API-Key",
        verify_token=created["verify_token"],
    )


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], content_type: str
) -> tuple[int, Any]:
    async with http.post(url, data=body, headers={"Content-Type": content_type, **headers}) as resp:
        raw = await resp.read()
        try:
            return resp.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return resp.status, raw.decode(errors="replace")


async def test_each_template_from_the_cli_accepts_its_vendors_example(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"e2e-{unique}")
    hooks = {
        name: hook_of(
            await arun_cli(
                settings_env,
                "webhook",
                "create",
                "-W",
                ws["id"],
                "--name",
                name,
                "--template",
                name,
            )
        )
        for name in TEMPLATES
    }
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        for name, tpl in TEMPLATES.items():
            if tpl.content_type == "application/x-www-form-urlencoded":
                body = urlencode(tpl.example_payload).encode()
            else:
                body = orjson.dumps(tpl.example_payload)
            hook = hooks[name]
            status, data = await post(
                http, gw.hook_url(hook), body, auth_headers(hook, body), tpl.content_type
            )
            assert status == 202, (name, data)
            # Without credentials a secret mode refuses the same body.
            status, _ = await post(http, gw.hook_url(hook), body, {}, tpl.content_type)
            assert status == 401, name
    events = {e.webhook_id: e for e in map(decode_raw, await read_topic(settings, topics.RAW))}
    for name, hook in hooks.items():
        lead = events[hook.id].lead
        assert (lead.phone, lead.email, lead.first_name) == (
            "+16266633444",
            "benjie@example.com",
            "Benjie",
        ), name


async def test_rotated_secret_through_the_gateway(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"rot-{unique}")
    created = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["id"], "--name", "k", "--auth", "api-key"
    )
    old = hook_of(created)
    body = orjson.dumps(TEMPLATES["generic"].example_payload)
    async with running_gateway(settings, config_ttl_s=1) as gw, aiohttp.ClientSession() as http:

        async def status(hook: Hook) -> int:
            return (
                await post(
                    http, gw.hook_url(hook), body, auth_headers(hook, body), "application/json"
                )
            )[0]

        assert await status(old) == 202
        rotated = await arun_cli(
            settings_env, "webhook", "rotate-secret", created["id"], "--grace", "4s"
        )
        new = hook_of({**created, "secret": rotated["secret"]})
        await eventually(
            lambda: status(new), until=lambda s: s == 202, deadline_s=5, what="new key accepted"
        )
        assert await status(old) == 202  # grace period: both work
        await eventually(
            lambda: status(old), until=lambda s: s == 401, deadline_s=15, what="old key expired"
        )
        assert await status(new) == 202


async def test_cli_changes_reach_a_running_gateway(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"ttl-{unique}")
    created = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["id"], "--name", "n", "--auth", "none"
    )
    hook = hook_of(created)
    body = orjson.dumps(TEMPLATES["generic"].example_payload)
    async with running_gateway(settings, config_ttl_s=2) as gw, aiohttp.ClientSession() as http:

        async def status() -> int:
            return (await post(http, gw.hook_url(hook), body, {}, "application/json"))[0]

        assert await status() == 202
        await arun_cli(settings_env, "webhook", "disable", created["id"])
        await eventually(
            status, until=lambda s: s == 410, deadline_s=5, what="webhook disable seen"
        )
        await arun_cli(settings_env, "webhook", "enable", created["id"])
        await eventually(status, until=lambda s: s == 202, deadline_s=5, what="webhook enable seen")
        await arun_cli(settings_env, "workspace", "disable", ws["id"])
        await eventually(
            status, until=lambda s: s == 410, deadline_s=5, what="workspace disable seen"
        )
        await arun_cli(settings_env, "workspace", "enable", ws["id"])
        await eventually(
            status, until=lambda s: s == 202, deadline_s=5, what="workspace enable seen"
        )
        # A new mapping applies too: without a phone/email entry the lead is invalid.
        await arun_cli(
            settings_env,
            "mapping",
            "set",
            created["id"],
            "-",
            stdin=b'[{"source": "firstname", "target": "first_name"}]',
        )
        await eventually(status, until=lambda s: s == 400, deadline_s=5, what="new mapping seen")
