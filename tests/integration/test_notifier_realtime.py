"""Real-time push over Socket.IO: one room per workspace, joined with its token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import socketio

from services.notifier.settings import NotifierSettings
from shared.settings import CommonSettings
from tests.support.cli import arun_cli
from tests.support.events import processed, publish_events
from tests.support.notifier import notifier_settings, running_notifier, seed_workspace
from tests.support.polling import eventually
from tests.support.processes import env_for

pytestmark = pytest.mark.integration


class Client:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.leads: list[dict[str, Any]] = []
        self.sio.on("lead", self._on_lead)

    async def _on_lead(self, data: dict[str, Any]) -> None:
        self.leads.append(data)

    def event_ids(self) -> list[str]:
        return [d["event_id"] for d in self.leads]


@asynccontextmanager
async def connected(s: NotifierSettings, workspace_id: str, token: str) -> AsyncIterator[Client]:
    client = Client()
    await client.sio.connect(
        f"http://127.0.0.1:{s.notifier_port}",
        auth={"workspace_id": workspace_id, "token": token},
        transports=["websocket"],
        wait_timeout=5,
    )
    try:
        yield client
    finally:
        await client.sio.disconnect()


async def _token(settings: CommonSettings, workspace: str) -> str:
    doc = await arun_cli(env_for(settings), "notify", "token", "--workspace", workspace)
    return str(doc["token"])


async def test_a_workspace_client_gets_new_contacts_and_no_one_else_does(
    settings: CommonSettings,
) -> None:
    # Default rules: every lead is pushed in real time. Tokens come from the CLI.
    ws_a = await seed_workspace(settings.database_url, name="rt-a")
    ws_b = await seed_workspace(settings.database_url, name="rt-b")
    token_a, token_b = await _token(settings, "rt-a"), await _token(settings, "rt-b")
    s = notifier_settings(settings)
    async with running_notifier(s):
        url = f"http://127.0.0.1:{s.notifier_port}"
        # A wrong token, another workspace's token, no auth: refused.
        for auth in (
            {"workspace_id": str(ws_a), "token": token_b},
            {"workspace_id": str(ws_a), "token": token_a + "x"},
            {"workspace_id": "not-a-uuid", "token": token_a},
            None,
        ):
            intruder = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await intruder.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
            await intruder.disconnect()

        async with connected(s, str(ws_a), token_a) as a, connected(s, str(ws_b), token_b) as b:
            # Warm up: the consumer has its partitions once the first push arrives.
            warm = processed(ws_a)
            await publish_events(settings, [warm])
            await eventually(
                lambda: _ids(a), until=lambda ids: str(warm.event_id) in ids, deadline_s=30
            )

            # It arrives. (How fast is not asserted: a wall-clock figure fails on a busy
            # machine; speed is a benchmark's to measure.)
            lead = processed(ws_a, first_name="Jane", last_name="Doe", product="Solar")
            await publish_events(settings, [lead])
            await eventually(
                lambda: _ids(a), until=lambda ids: str(lead.event_id) in ids, deadline_s=30
            )
            data = next(d for d in a.leads if d["event_id"] == str(lead.event_id))
            assert data["contact"]["first_name"] == "Jane" and data["contact"]["product"] == "Solar"
            assert data["contact"]["id"] == str(lead.contact.id)
            assert data["action"] == "created" and data["kinds"] == ["lead_created"]

            # The same event again (redelivery) is not pushed again; B sees only its own.
            own = processed(ws_b)
            await publish_events(settings, [lead, own])
            await eventually(lambda: _ids(b), until=lambda ids: str(own.event_id) in ids)
            sentinel = processed(ws_a)
            await publish_events(settings, [sentinel])
            await eventually(lambda: _ids(a), until=lambda ids: str(sentinel.event_id) in ids)
            assert a.event_ids() == [str(warm.event_id), str(lead.event_id), str(sentinel.event_id)]
            assert b.event_ids() == [str(own.event_id)]


async def _ids(client: Client) -> list[str]:
    return client.event_ids()


async def test_rotating_the_token_locks_the_old_one_out(settings: CommonSettings) -> None:
    ws = await seed_workspace(settings.database_url, name="rt-rotate")
    old = await _token(settings, "rt-rotate")
    doc = await arun_cli(env_for(settings), "notify", "token", "-W", "rt-rotate", "--rotate")
    new = doc["token"]
    s = notifier_settings(settings)
    async with running_notifier(s):
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with connected(s, str(ws), old):
                pass
        async with connected(s, str(ws), new) as client:
            assert client.sio.connected


async def test_live_sessions_are_dropped_when_their_token_is_rotated_or_workspace_disabled(
    settings: CommonSettings,
) -> None:
    """A rotation (the CLI) drops the sessions opened with the old token and keeps the
    others; disabling a workspace drops every session of it; each within seconds, and the
    old token (or the disabled workspace) cannot reconnect."""
    ws_a = await seed_workspace(settings.database_url, name="rt-drop-a")
    ws_b = await seed_workspace(settings.database_url, name="rt-drop-b")
    old_a, token_b = await _token(settings, "rt-drop-a"), await _token(settings, "rt-drop-b")
    s = notifier_settings(settings, notify_realtime_recheck_s=0.5)
    env = env_for(settings)
    loop = asyncio.get_running_loop()
    async with (
        running_notifier(s),
        connected(s, str(ws_a), old_a) as a,
        connected(s, str(ws_b), token_b) as b,
    ):
        rotated = await arun_cli(env, "notify", "token", "-W", "rt-drop-a", "--rotate")
        at = loop.time()
        await eventually(
            lambda: _connected(a), until=lambda up: not up, deadline_s=10, what="A dropped"
        )
        dropped_after = loop.time() - at
        assert dropped_after < 5, dropped_after
        assert b.sio.connected  # another workspace's session stays
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with connected(s, str(ws_a), old_a):
                pass
        async with connected(s, str(ws_a), rotated["token"]) as again:
            await arun_cli(env, "workspace", "disable", "rt-drop-a")
            await eventually(
                lambda: _connected(again), until=lambda up: not up, deadline_s=10, what="disabled"
            )
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with connected(s, str(ws_a), rotated["token"]):
                pass
        assert b.sio.connected
    print(f"a session was dropped {dropped_after * 1000:.0f} ms after its token was rotated")


async def _connected(client: Client) -> bool:
    return bool(client.sio.connected)
