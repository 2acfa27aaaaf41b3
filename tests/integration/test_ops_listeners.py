"""Ops endpoints off the public ports: every service answers /healthz, /readyz and
/metrics on its ops listener (bound to 127.0.0.1), and none of its public listeners
(gateway, notifier's Socket.IO, analytics, management API) answers them; no public answer
of the gateway names a webhook id other than the one asked about."""

from __future__ import annotations

import socket
import uuid

import aiohttp
import orjson
import pytest

from shared.settings import CommonSettings
from tests.support.api import api_settings, running_api
from tests.support.ingest import create_webhook
from tests.support.pipeline import running_pipeline

pytestmark = pytest.mark.integration

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


def _outward_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the route's source
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_ops_routes_only_on_the_ops_listeners(settings: CommonSettings) -> None:
    quiet = await create_webhook(settings.database_url, auth_mode="none")
    loud = await create_webhook(settings.database_url, auth_mode="none")
    api_cfg = api_settings(settings)
    async with (
        running_pipeline(settings) as pipeline,
        running_api(api_cfg) as api,
        aiohttp.ClientSession() as http,
    ):
        ops = {name: url.removesuffix("/readyz") for name, url in pipeline.ready_urls.items()}
        ops["api"] = api_cfg.ops_url("api")
        public = {**pipeline.public_urls, "api": api.url}
        assert set(ops) == {"ingest", "processor", "notifier", "analytics", "archiver", "api"}
        assert set(public) == {"ingest", "notifier", "analytics", "api"}

        # The gateway sees both webhooks: its metrics name them.
        for hook in (quiet, loud):
            async with http.post(pipeline.gateway.hook_url(hook), json={"email": "a@b.co"}) as r:
                assert r.status == 202, await r.text()

        for name, url in ops.items():
            for path in OPS_PATHS:
                async with http.get(f"{url}{path}") as resp:
                    assert resp.status == 200, (name, path, await resp.text())
            async with http.get(f"{url}/readyz") as resp:
                assert (await resp.json())["service"] == name
        async with http.get(f"{ops['ingest']}/metrics") as resp:
            assert str(loud.id) in await resp.text()

        for name, url in public.items():
            for path in OPS_PATHS:
                async with http.get(f"{url}{path}") as resp:
                    body = await resp.text()
                    assert resp.status in (401, 404), (name, path, resp.status)
                    assert "leadwire_" not in body and str(loud.id) not in body, (name, path)

        # A public answer about one webhook never names another.
        for path in (f"/webhooks/{quiet.id}", f"/webhooks/{quiet.id}/requests/{uuid.uuid4()}"):
            async with http.get(f"{public['ingest']}{path}") as resp:
                assert str(loud.id) not in await resp.text(), path
        async with http.post(f"{public['ingest']}/webhooks/{uuid.uuid4()}", json={}) as resp:
            assert resp.status == 404
            assert not {str(quiet.id), str(loud.id)} & set(_strings(await resp.read()))

        outward = _outward_address()
        if outward is not None:  # loopback only: another address of the host is refused
            for name, url in ops.items():
                port = int(url.rsplit(":", 1)[1])
                with socket.socket() as s:
                    s.settimeout(2)
                    assert s.connect_ex((outward, port)) != 0, f"{name} ops on {outward}"


def _strings(body: bytes) -> list[str]:
    """Every string value of a JSON answer."""
    out: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(orjson.loads(body))
    return out
