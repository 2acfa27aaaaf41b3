"""Who may read analytics (services/analytics/auth.py, sessions.py), on the in-memory
repository, keys and sessions: nothing without a key; a workspace's key sees its workspace
only (another's ids answer 404, as unknown ones); the dashboard's sign-in opens a session
whose cookie is HttpOnly and SameSite=Strict, holds no key, expires, ends at logout and
with its key; a live stream ends when its key stops working."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.analytics import handlers
from services.analytics.alerts import Thresholds
from services.analytics.api import Api, create_app, openapi_document
from services.analytics.fake_repository import FakeAnalytics
from services.analytics.queries import ReadConfig
from services.analytics.sessions import COOKIE
from services.analytics.stream import Hub
from tests.support.analytics import MemoryKeys, memory_access
from tests.support.events import processed

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
MINE, THEIRS = uuid.uuid4(), uuid.uuid4()
MY_HOOK, THEIR_HOOK = uuid.uuid4(), uuid.uuid4()
CONFIG = handlers.Config(accuracy=0.01, dedupe_days=30, thresholds=Thresholds(10.0, 1000.0, 20, 5))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Setup:
    def __init__(
        self, client: TestClient[web.Request, web.Application], keys: MemoryKeys, clock: Clock
    ) -> None:
        self.client = client
        self.keys = keys
        self.clock = clock
        self.operator = keys.add(None)
        self.mine = keys.add(MINE)
        self.theirs = keys.add(THEIRS)

    async def get(self, path: str, key: str | None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = await self.client.get(path, headers=headers)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    repo = FakeAnalytics()
    repo.configure(MINE, "Mine", {MY_HOOK: "mine-form"})
    repo.configure(THEIRS, "Theirs", {THEIR_HOOK: "their-form"})
    at = T0 - timedelta(minutes=2)
    await handlers.count_outcomes(
        [processed(MINE, MY_HOOK, received_at=at), processed(THEIRS, THEIR_HOOK, received_at=at)],
        repo=repo,
        config=CONFIG,
        now=T0,
    )
    clock = Clock()
    access, keys = memory_access(clock, lifetime=timedelta(hours=8))
    api = Api(
        repo=repo,
        read=ReadConfig(accuracy=0.01),
        hub=Hub(),
        clock=clock,
        stream_refresh_s=30,
        stream_recheck_s=0.1,
    )
    async with TestClient(TestServer(create_app(api, access))) as client:
        yield Setup(client, keys, clock)


def _filled(path: str) -> str:
    return path.replace("{webhook_id}", str(MY_HOOK)).replace("{workspace_id}", str(MINE))


async def test_nothing_but_the_public_routes_answers_without_a_key(setup: Setup) -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("security") == []:
                continue  # public: the sign-in, its assets, the document
            resp = await setup.client.request(method.upper(), _filled(path))
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"] == "missing_api_key"
    for bad in ("Bearer lwk_nope", "Basic abc", "Bearer "):
        resp = await setup.client.get("/analytics/workspaces", headers={"Authorization": bad})
        assert resp.status == 401, bad


async def test_a_workspace_key_sees_only_its_workspace(setup: Setup) -> None:
    status, listing = await setup.get("/analytics/workspaces", setup.mine)
    assert status == 200
    assert [w["workspace_id"] for w in listing["workspaces"]] == [str(MINE)]  # type: ignore[index]
    status, everyone = await setup.get("/analytics/workspaces", setup.operator)
    assert {w["workspace_id"] for w in everyone["workspaces"]} == {str(MINE), str(THEIRS)}  # type: ignore[index]
    unknown = uuid.uuid4()
    for own, foreign, nowhere in (
        (
            f"/analytics/workspaces/{MINE}",
            f"/analytics/workspaces/{THEIRS}",
            f"/analytics/workspaces/{unknown}",
        ),
        (
            f"/analytics/webhooks/{MY_HOOK}",
            f"/analytics/webhooks/{THEIR_HOOK}",
            f"/analytics/webhooks/{unknown}",
        ),
        (
            f"/analytics/webhooks/{MY_HOOK}/timeseries",
            f"/analytics/webhooks/{THEIR_HOOK}/timeseries",
            f"/analytics/webhooks/{unknown}/timeseries",
        ),
    ):
        assert (await setup.get(own, setup.mine))[0] == 200, own
        assert (await setup.get(foreign, setup.operator))[0] == 200, foreign
        status, body = await setup.get(foreign, setup.mine)
        status_nowhere, body_nowhere = await setup.get(nowhere, setup.mine)
        # Another workspace's id answers as an id that exists nowhere (but for the id).
        assert (status, status_nowhere) == (404, 404), foreign
        assert body["error"] == body_nowhere["error"]  # type: ignore[index]
    resp = await setup.client.get(
        f"/analytics/workspaces/{THEIRS}/stream", headers={"Authorization": f"Bearer {setup.mine}"}
    )
    assert resp.status == 404


def _cookie(resp: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        jar.load(header)
    return jar


async def test_the_dashboard_signs_in_once_and_keeps_a_session(setup: Setup) -> None:
    client = setup.client
    page = await client.get("/dashboard")
    assert page.status == 401 and 'name="key"' in await page.text()
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert (await client.get("/login")).status == 200

    refused = await client.post("/login", data={"key": "lwk_wrong", "next": "/dashboard"})
    assert refused.status == 401 and "does not work" in await refused.text()
    assert COOKIE not in _cookie(refused)
    for foreign in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # an opaque origin (a page that hides its own)
        {"Sec-Fetch-Site": "cross-site"},
    ):
        cross = await client.post("/login", data={"key": setup.mine}, headers=foreign)
        assert cross.status == 403, foreign
        assert COOKIE not in _cookie(cross)

    signed = await client.post(
        "/login", data={"key": setup.mine, "next": "/dashboard"}, allow_redirects=False
    )
    assert signed.status == 303
    assert signed.headers["Location"] == f"/dashboard/{MINE}"  # a workspace key sees one
    morsel = _cookie(signed)[COOKIE]
    assert morsel["httponly"] is True and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/" and int(morsel["max-age"]) == 8 * 3600
    assert setup.mine not in morsel.value and len(morsel.value) >= 43  # an id, not the key

    # The session reads what the key reads, and no more.
    assert (await client.get(f"/dashboard/{MINE}")).status == 200
    listing = await (await client.get("/analytics/workspaces")).json()
    assert [w["workspace_id"] for w in listing["workspaces"]] == [str(MINE)]
    assert (await client.get(f"/analytics/workspaces/{THEIRS}")).status == 404
    stream = await client.get(f"/analytics/workspaces/{MINE}/stream")
    assert stream.status == 200
    assert (await stream.content.readuntil(b"\n\n")).startswith(b"event: snapshot")
    stream.close()

    out = await client.post("/logout", allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert _cookie(out)[COOKIE].value == ""
    # The old cookie, sent again, opens nothing.
    client.session.cookie_jar.update_cookies({COOKIE: morsel.value})
    assert (await client.get("/analytics/workspaces")).status == 401
    assert (await client.get("/dashboard")).status == 401


async def test_a_session_ends_with_its_lifetime_and_with_its_key(setup: Setup) -> None:
    client = setup.client
    # An open redirect is not followed: anywhere else leads to the dashboard.
    signed = await client.post(
        "/login", data={"key": setup.operator, "next": "//evil.example/"}, allow_redirects=False
    )
    assert signed.headers["Location"] == "/dashboard"
    assert (await client.get("/analytics/workspaces")).status == 200
    setup.clock.now += timedelta(hours=8, seconds=1)
    assert (await client.get("/analytics/workspaces")).status == 401

    setup.clock.now = T0
    await client.post("/login", data={"key": setup.mine}, allow_redirects=False)
    assert (await client.get(f"/analytics/workspaces/{MINE}")).status == 200
    setup.keys.revoke(setup.mine)
    resp = await client.get(f"/analytics/workspaces/{MINE}")
    assert resp.status == 401 and (await resp.json())["error"] == "revoked_api_key"


async def test_a_live_stream_ends_when_its_key_is_revoked(setup: Setup) -> None:
    key = setup.keys.add(MINE)
    resp = await setup.client.get(
        f"/analytics/workspaces/{MINE}/stream", headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status == 200
    assert (await resp.content.readuntil(b"\n\n")).startswith(b"event: snapshot")
    setup.keys.revoke(key)
    rest = await asyncio.wait_for(resp.content.read(), 5)  # the server ends the stream
    assert rest == b""
