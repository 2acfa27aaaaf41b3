"""SMTP with credentials never sends the password in clear: against a real SMTP server
(aiosmtpd) that offers no STARTTLS but takes AUTH in clear, as a server behind a
STARTTLS-stripping man in the middle looks, the sender refuses before any AUTH, and the
message is not sent. (No Kafka, Postgres or S3: the sender against the server alone.)"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from services.notifier.render import Item, summarize
from services.notifier.senders import EmailSender, SendError
from services.notifier.settings import NotifierSettings
from tests.support.events import processed
from tests.support.net import free_port

pytestmark = pytest.mark.integration

PASSWORD = "canary-smtp-password"


class _Server:
    """Records every AUTH attempt and every message."""

    def __init__(self) -> None:
        self.auth_attempts: list[str] = []
        self.messages: list[bytes] = []
        self.lock = threading.Lock()

    def authenticator(self, _server: Any, _session: Any, _env: Any, mech: str, data: Any) -> Any:
        with self.lock:
            self.auth_attempts.append(mech)
        return AuthResult(success=True)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def stripped() -> Iterator[tuple[_Server, int]]:
    """A server without STARTTLS that accepts AUTH PLAIN/LOGIN in clear."""
    server = _Server()
    port = free_port()
    controller = Controller(
        server,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=server.authenticator,
    )
    controller.start()
    try:
        yield server, port
    finally:
        controller.stop()


def _item() -> Item:
    event = processed(uuid.uuid4(), uuid.uuid4())
    return Item(summary=summarize(event, workspace_name="Acme"), kinds=("lead_created",))


async def test_the_stub_would_take_a_password_in_clear(stripped: tuple[_Server, int]) -> None:
    """The hole: a client that upgrades only when STARTTLS is offered logs in in clear."""
    server, port = stripped
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, username="leadwire", password=PASSWORD, start_tls=None
    )
    await client.connect()
    await client.quit()
    assert server.auth_attempts, "the stub must accept AUTH in clear for the test to mean anything"


async def test_with_credentials_a_stripped_starttls_never_sends_the_password(
    stripped: tuple[_Server, int],
) -> None:
    server, port = stripped
    settings = NotifierSettings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_username="leadwire",
        smtp_password=PASSWORD,
        notify_send_timeout_s=5,
    )
    assert settings.smtp_starttls is None  # left unset: "when offered" was the old meaning
    with pytest.raises(SendError) as refused:
        await EmailSender(settings).send("ops@example.com", [_item()])
    assert refused.value.code == "smtp_starttls_unavailable"
    assert not refused.value.permanent  # the server (or the network) may be fixed
    assert server.auth_attempts == [] and server.messages == []


async def test_without_credentials_the_same_server_gets_the_message(
    stripped: tuple[_Server, int],
) -> None:
    server, port = stripped
    settings = NotifierSettings(smtp_host="127.0.0.1", smtp_port=port, notify_send_timeout_s=5)
    assert await EmailSender(settings).send("ops@example.com", [_item()])
    assert len(server.messages) == 1 and server.auth_attempts == []
