"""A local SMTP server and a Twilio-compatible SMS provider for the notifier to send to:
they record what arrived; the soak's faults stop and start them."""

from __future__ import annotations

import base64
import email
import email.policy
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SMS_SID = "ACsoak00000000000000000000000000000"
SMS_TOKEN = "soak-sms-token"
SMS_FROM = "+16262150199"


@dataclass
class Mail:
    rcpt_tos: list[str]
    event_ids: list[str]


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 (own thread): records every message; ``stop()``
    refuses connections until ``start()`` brings it back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Mail] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                ids = [
                    v.strip()
                    for v in str(msg.get("X-Leadwire-Event-Ids", "")).split(",")
                    if v.strip()
                ]
                with sink._lock:
                    sink.messages.append(Mail(list(envelope.rcpt_tos), ids))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.messages)


class SmsSink:
    """A Twilio-compatible Messages API on 127.0.0.1 (basic auth, form fields)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
        if request.match_info["sid"] != SMS_SID or request.headers.get("Authorization") != expected:
            return web.json_response({"message": "unauthorized"}, status=401)
        form = await request.post()
        self.messages.append({k: str(v) for k, v in form.items()})
        return web.json_response({"sid": f"SM{uuid.uuid4().hex}", "status": "queued"}, status=201)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def smtp_env(smtp: SmtpSink) -> dict[str, str]:
    """The notifier's LEADWIRE_SMTP_* settings pointing at ``smtp`` (no TLS)."""
    return {
        "LEADWIRE_SMTP_HOST": "127.0.0.1",
        "LEADWIRE_SMTP_PORT": str(smtp.port),
        "LEADWIRE_SMTP_STARTTLS": "false",
    }


def sms_env(sms: SmsSink) -> dict[str, str]:
    """The notifier's LEADWIRE_SMS_* settings pointing at ``sms``."""
    return {
        "LEADWIRE_SMS_BASE_URL": sms.base_url,
        "LEADWIRE_SMS_ACCOUNT_SID": SMS_SID,
        "LEADWIRE_SMS_AUTH_TOKEN": SMS_TOKEN,
        "LEADWIRE_SMS_FROM": SMS_FROM,
    }
