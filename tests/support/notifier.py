"""Test helpers for the notifier: a real SMTP server (aiosmtpd), a local HTTP server
playing a Twilio-compatible SMS provider, workspace seeding, and the notifier run
in-process."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from services.notifier.settings import NotifierSettings
from shared.settings import CommonSettings
from tests.support.net import free_port

# --- a real SMTP server ---------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def event_ids(self) -> list[str]:
        value = self.message.get("X-Leadwire-Event-Ids", "")
        # A long header is folded on the wire: strip the folding whitespace.
        return [v.strip() for v in str(value).split(",") if v.strip()]

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return str(part.get_content()) if part is not None else ""


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._sink.lock:
            self._sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


class SmtpSink:
    """An aiosmtpd SMTP server on 127.0.0.1 (its own thread); ``stop()`` takes it down
    (connections refused) and ``start()`` brings it back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def per_event(self, recipient: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.received():
            if recipient is not None and recipient not in m.rcpt_tos:
                continue
            for eid in m.event_ids:
                counts[eid] = counts.get(eid, 0) + 1
        return counts


# --- an SMS provider ------------------------------------------------------------------


@dataclass
class SmsStub:
    """A Twilio-compatible Messages API on 127.0.0.1; ``status`` is what it answers."""

    sid: str = "ACtest0000000000000000000000000000"
    token: str = "sms-auth-token"
    status: int = 201
    port: int = field(default_factory=free_port)
    messages: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if request.match_info["sid"] != self.sid or request.headers.get("Authorization") is None:
            return web.json_response({"message": "unauthorized"}, status=401)
        import base64

        user, _, password = (
            base64.b64decode(request.headers["Authorization"].split()[1]).decode().partition(":")
        )
        if (user, password) != (self.sid, self.token):
            return web.json_response({"message": "unauthorized"}, status=401)
        if self.status >= 300:
            return web.json_response({"message": "provider down"}, status=self.status)
        form = await request.post()
        msg = {k: str(v) for k, v in form.items()}
        self.messages.append(msg)
        return web.json_response({"sid": f"SM{uuid.uuid4().hex}", "status": "queued"}, status=201)

    async def start(self) -> SmsStub:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- settings, seeding, running -------------------------------------------------------


def notifier_settings(
    settings: CommonSettings,
    *,
    smtp: SmtpSink | None = None,
    sms: SmsStub | None = None,
    **overrides: Any,
) -> NotifierSettings:
    values: dict[str, Any] = {
        **settings.model_dump(),
        "notifier_port": free_port(),
        "notifier_ops_port": free_port(),
        "notify_batch_window_s": 0.5,
        "notify_retry_base_s": 0.2,
        "notify_poll_interval_s": 0.1,
        "notify_send_timeout_s": 5.0,
    }
    if smtp is not None:
        values.update(
            smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="leadwire <noreply@leadwire.test>"
        )
    if sms is not None:
        values.update(
            sms_base_url=sms.base_url,
            sms_account_sid=sms.sid,
            sms_auth_token=sms.token,
            sms_from="+15550000000",
        )
    values.update(overrides)
    return NotifierSettings(**values)


def settings_env(s: NotifierSettings) -> dict[str, str]:
    """LEADWIRE_* env vars for a subprocess running with settings ``s``."""
    from tests.support.processes import env_for

    env = env_for(s)
    for name, value in s.model_dump().items():
        if value is None:
            env.pop(f"LEADWIRE_{name.upper()}", None)
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"LEADWIRE_{name.upper()}"] = str(value)
    return env


async def seed_workspace(
    database_url: str,
    *,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
    token: str | None = None,
) -> uuid.UUID:
    workspace_id = uuid.uuid4()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2)",
            workspace_id,
            name or f"ws-{workspace_id.hex[:8]}",
        )
        await conn.execute(
            """INSERT INTO notification_settings (workspace_id, settings, realtime_token_hash)
               VALUES ($1, $2::jsonb, $3)""",
            workspace_id,
            orjson.dumps(settings or {}).decode(),
            hashlib.sha256(token.encode()).hexdigest() if token else None,
        )
    finally:
        await conn.close()
    return workspace_id


async def send_rows(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, channel, recipient, status, attempts, last_error FROM notification_sends"
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_notifier(s: NotifierSettings) -> AsyncIterator[asyncio.Task[None]]:
    """The notifier in this process until the block ends (then a clean stop)."""
    from services.notifier.service import run_notifier

    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_notifier(s, stop, ready=ready))
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            [waiter, task], timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
        assert waiter in done, "notifier did not start"
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
