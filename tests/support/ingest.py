"""Helpers for gateway tests: webhooks in SQL, an in-process gateway on a free port, and
signing requests. (What reached a topic: :mod:`tests.support.topics`.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from services.ingest import auth
from services.ingest.app import DEPS
from services.ingest.deps import Deps
from services.ingest.service import start_gateway
from services.ingest.settings import IngestSettings
from shared.db import connect
from shared.kafka import ensure_topics
from shared.secrets import hash_secret
from shared.service import Service
from shared.settings import CommonSettings
from shared.templates import get_template
from tests.support.net import free_port

# A vendor's lead in the generic template's field names: its own example (Benjie Malinao
# with a CRM id, a phone and an email, product "Bath Remodel", status "new").
GENERIC_BODY = get_template("generic").example_payload


def webhook_row(**columns: Any) -> dict[str, Any]:
    """A webhook as the gateway's repository reads it (joined with its workspace)."""
    return {
        "id": uuid.uuid4(),
        "workspace_id": uuid.uuid4(),
        "name": "w",
        "template": "generic",
        "auth_mode": "none",
        "secret": None,
        "secret_previous": None,
        "secret_previous_expires_at": None,
        "basic_username": None,
        "api_key_header": "X-API-Key",
        "status": "active",
        "rate_limit_per_minute": None,
        "max_body_bytes": None,
        "idempotency_field": None,
        "mapping": [],
        "verify_token": None,
        "workspace_status": "active",
        "default_region": "US",
        **columns,
    }


def ingest_settings(settings: CommonSettings, **overrides: Any) -> IngestSettings:
    values = settings.model_dump()
    values.update(overrides)
    return IngestSettings(**values)


# --- webhooks -----------------------------------------------------------------------


@dataclass
class Hook:
    id: uuid.UUID
    workspace_id: uuid.UUID
    auth_mode: str
    # What a vendor holds: the whsec_/github secret, the basic password or the API key.
    secret: str | None = None
    username: str | None = None
    api_key_header: str = "X-API-Key"
    verify_token: str | None = None


async def create_webhook(
    database_url: str,
    *,
    auth_mode: str = "none",
    secret: str | None = None,
    template: str = "generic",
    region: str = "US",
    workspace_id: uuid.UUID | None = None,
    **columns: Any,
) -> Hook:
    """A workspace (unless given) and a webhook, straight into the tables."""
    conn = await connect(database_url)
    try:
        if workspace_id is None:
            workspace_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO workspaces (id, name, default_region) VALUES ($1, $2, $3)",
                workspace_id,
                f"ws-{workspace_id.hex[:10]}",
                region,
            )
        hook_id = uuid.uuid4()
        if auth_mode == "standard" and secret is None:
            secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
        elif auth_mode in ("github", "basic", "api-key") and secret is None:
            secret = f"s3cret-{uuid.uuid4().hex}"
        stored = secret
        if auth_mode in ("basic", "api-key") and secret is not None:
            stored = hash_secret(secret)
        if auth_mode == "basic":
            columns.setdefault("basic_username", "lw_test")
        values = {
            "id": hook_id,
            "workspace_id": workspace_id,
            "name": f"hook-{hook_id.hex[:10]}",
            "template": template,
            "auth_mode": auth_mode,
            "secret": stored if auth_mode != "none" else None,
            **columns,
        }
        names = ", ".join(values)
        params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await conn.execute(f"INSERT INTO webhooks ({names}) VALUES ({params})", *values.values())
        return Hook(
            id=hook_id,
            workspace_id=workspace_id,
            auth_mode=auth_mode,
            secret=secret,
            username=columns.get("basic_username"),
            api_key_header=columns.get("api_key_header", "X-API-Key"),
            verify_token=columns.get("verify_token"),
        )
    finally:
        await conn.close()


def auth_headers(
    hook: Hook, body: bytes, *, msg_id: str | None = None, now: float | None = None
) -> dict[str, str]:
    """Headers that authenticate ``body`` for ``hook`` (a fresh webhook-id if none given)."""
    if hook.auth_mode == "standard":
        assert hook.secret is not None
        ts = str(int(now if now is not None else time.time()))
        mid = msg_id or f"msg_{uuid.uuid4().hex}"
        return {
            "webhook-id": mid,
            "webhook-timestamp": ts,
            "webhook-signature": auth.sign_standard(auth.standard_key(hook.secret), mid, ts, body),
        }
    if hook.auth_mode == "github":
        assert hook.secret is not None
        return {"X-Hub-Signature-256": auth.sign_github(hook.secret.encode(), body)}
    if hook.auth_mode == "basic":
        token = base64.b64encode(f"{hook.username}:{hook.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if hook.auth_mode == "api-key":
        assert hook.secret is not None
        return {hook.api_key_header: hook.secret}
    return {}


# --- a gateway in this process --------------------------------------------------------


@dataclass
class Gateway:
    url: str
    app: web.Application
    settings: IngestSettings

    @property
    def deps(self) -> Deps:
        return self.app[DEPS]

    @property
    def ops_url(self) -> str:
        """Where /healthz, /readyz and /metrics answer (the ops listener)."""
        return self.settings.ops_url("ingest")

    def hook_url(self, hook: Hook | uuid.UUID | str) -> str:
        hook_id = hook.id if isinstance(hook, Hook) else hook
        return f"{self.url}/webhooks/{hook_id}"


@contextlib.asynccontextmanager
async def running_gateway(
    settings: CommonSettings,
    *,
    clock: Callable[[], float] | None = None,
    wait_ready: bool = True,
    create_topics: bool = True,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    """The gateway app served on a free port (the real runner: 431s, limits and all)."""
    port = free_port()
    overrides.setdefault("ingest_port", port)
    overrides.setdefault("ingest_ops_port", free_port())
    overrides.setdefault("public_url", f"http://127.0.0.1:{port}")
    # The Facebook fetcher's consumer group, the test's own (its topics are too).
    overrides.setdefault("facebook_fetch_group", f"{settings.topic_prefix}ingest-facebook")
    cfg = ingest_settings(settings, **overrides)
    if create_topics:
        await ensure_topics(cfg)
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    async with Service("ingest", asyncio.Event()) as svc:
        app = await start_gateway(svc, cfg, host="127.0.0.1", shutdown_timeout_s=2, **kwargs)
        gateway = Gateway(url=f"http://127.0.0.1:{cfg.ingest_port}", app=app, settings=cfg)
        if wait_ready:
            await wait_until_ready(gateway.ops_url)
        yield gateway


async def wait_until_ready(url: str, deadline_s: float = 30.0) -> None:
    """Until ``url`` (an ops listener) answers /readyz with 200."""
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
                    last = await resp.text()
            except aiohttp.ClientError as exc:
                last = repr(exc)
            if time.monotonic() > end:
                raise TimeoutError(f"gateway at {url} not ready: {last}")
            await asyncio.sleep(0.05)


# --- raw HTTP: bytes a client library would not send ------------------------------------


async def raw_post(
    url: str,
    path: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    timeout_s: float = 30.0,
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` + ``path`` over a plain socket, headers as given (bytes
    that are not UTF-8, or not even Latin-1 text); (status, response body)."""
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: " + host.encode()]
        head += [name + b": " + value for name, value in headers]
        head += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), content
