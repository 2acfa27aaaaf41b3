"""Test helpers for the notifier: synthetic outcome events, a real SMTP server (aiosmtpd),
a local HTTP server playing a Twilio-compatible SMS provider, workspace seeding, and the
notifier run in-process."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiosmtpd.controller import Controller

from services.notifier.settings import NotifierSettings
from shared import topics
from shared.events import (
    ContactSummary,
    ErrorInfo,
    LeadFailed,
    LeadProcessed,
    MappedLead,
    PerformanceAlert,
    Processing,
    RawRequest,
    outcome_event_id,
)
from shared.settings import CommonSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- events ---------------------------------------------------------------------------


def processed(
    workspace_id: uuid.UUID,
    *,
    first_name: str = "Benjie",
    last_name: str = "Malinao",
    phone: str = "+16266633444",
    email_addr: str = "benjie.malinao@example.com",
    product: str | None = "Solar",
    lead_status: str | None = "new",
    action: str = "created",
    received_at: datetime | None = None,
    custom: dict[str, Any] | None = None,
) -> LeadProcessed:
    request_id = uuid.uuid4()
    now = datetime.now(UTC)
    received = received_at or now
    lead = MappedLead(
        phone=phone,
        email=email_addr,
        first_name=first_name,
        last_name=last_name,
        product=product,
        lead_status=lead_status,
        custom=custom or {},
    )
    return LeadProcessed(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=uuid.uuid4(),
        occurred_at=now,
        received_at=received,
        request=RawRequest(path="/w/x", headers={}, content_type="application/json", payload={}),
        processing=Processing(start=received, end=now, duration_ms=3.0),
        lead=lead,
        lead_id=uuid.uuid4(),
        contact=ContactSummary(
            id=uuid.uuid4(),
            phone=phone,
            email=email_addr,
            first_name=first_name,
            last_name=last_name,
            product=product,
            lead_status=lead_status,
        ),
        action=action,
        match_type="new" if action == "created" else "phone",
        is_new_contact=action == "created",
        rule_applied=False,
    )


def failed(workspace_id: uuid.UUID) -> LeadFailed:
    request_id = uuid.uuid4()
    now = datetime.now(UTC)
    return LeadFailed(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=uuid.uuid4(),
        occurred_at=now,
        received_at=now,
        request=RawRequest(path="/w/x", headers={}, content_type="application/json", payload={}),
        processing=Processing(start=now, end=now, duration_ms=1.0),
        error=ErrorInfo(type="MappingError", message="field product missing"),
    )


def alert(workspace_id: uuid.UUID, *, state: str = "firing") -> PerformanceAlert:
    return PerformanceAlert(
        event_id=uuid.uuid4(),
        workspace_id=workspace_id,
        webhook_id=uuid.uuid4(),
        metric="error_rate",
        value=0.25,
        threshold=0.1,
        state=state,
        occurred_at=datetime.now(UTC) - timedelta(seconds=1),
    )


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


async def read_topic(
    settings: CommonSettings, logical: str, *, min_count: int = 0, deadline_s: float = 10.0
) -> list[dict[str, Any]]:
    """Every message of a topic (JSON), reading until ``min_count`` arrived or the deadline."""
    consumer = AIOKafkaConsumer(
        settings.topic(logical),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while loop.time() < end:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
            if min_count and len(out) >= min_count:
                break
            if not min_count and not batch and out:
                break
    finally:
        await consumer.stop()
    return out


DEADLETTER = topics.NOTIFY_DEADLETTER


async def publish(settings: CommonSettings, *events: Any, logical: str = topics.OUTCOMES) -> None:
    """Publish events (keyed by workspace, like the processor) and wait for the acks."""
    from shared.kafka import Publisher, ensure_topics

    await ensure_topics(settings)
    async with Publisher(settings) as pub:
        await pub.publish_many(logical, [(str(e.workspace_id), e) for e in events])


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``leadwire ARGS`` in this process (call it through asyncio.to_thread)."""
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr
