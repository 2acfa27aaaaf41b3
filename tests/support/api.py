"""Management API test helpers: the app on the in-memory repository (unit tests), the
service in this process (integration), a client that sends a key, and keys made through
the admin."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestClient, TestServer

from services.api import admin
from services.api.app import Api, create_app
from services.api.fake_repository import FakeKeyStore, FakeRepository
from services.api.handlers import Context
from services.api.service import run_api
from services.api.settings import ApiSettings
from shared.apikeys import KeyChecker
from shared.db import connect
from shared.settings import CommonSettings
from tests.support.net import free_port


def api_settings(settings: CommonSettings, **overrides: Any) -> ApiSettings:
    values = settings.model_dump()
    values.update(
        api_port=free_port(),
        api_ops_port=free_port(),
        api_key_touch_interval_s=0,
        log_format="json",
    )
    values.update(overrides)
    return ApiSettings(**values)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.body["errors"]]


class Client:
    """Requests to the API with one key (``key=None``: none)."""

    def __init__(self, send: Any, key: str | None) -> None:
        self._send = send
        self.key = key

    def as_(self, key: str | None) -> Client:
        return Client(self._send, key)

    async def call(
        self, method: str, path: str, json: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> Answer:
        headers = dict(kw.pop("headers", {}))
        if self.key is not None:
            headers["Authorization"] = f"Bearer {self.key}"
        if json is not None:
            raw = orjson.dumps(json)
            headers.setdefault("Content-Type", "application/json")
        async with self._send(method, path, data=raw, headers=headers, **kw) as resp:
            data = await resp.read()
            body = orjson.loads(data) if resp.content_type == "application/json" else data
            return Answer(resp.status, body, dict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, json if json is not None else {}, **kw)

    async def ok(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        """The body of an answer that must be a 2xx (AssertionError with the body if not)."""
        answer = await self.call(method, path, json, **kw)
        assert 200 <= answer.status < 300, (method, path, answer.status, answer.body)
        return answer.body


async def make_key(
    repo: admin.Repository, workspace_id: uuid.UUID | None, scope: str = "manage", **kw: Any
) -> str:
    created = await admin.create_api_key(repo, workspace_id=workspace_id, scope=scope, **kw)
    return str(created["key"])


async def db_key(
    database_url: str, workspace_id: uuid.UUID | None, scope: str = "manage", **kw: Any
) -> str:
    """A key made through the admin, in the database of ``database_url``."""
    conn = await connect(database_url)
    try:
        return await make_key(admin.PostgresRepository(conn), workspace_id, scope, **kw)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fake_api(
    repo: FakeRepository, *, settings: ApiSettings | None = None, max_body_bytes: int = 64 * 1024
) -> AsyncIterator[Client]:
    """The API on the in-memory repository (no Postgres: the pipeline's routes fail)."""
    app = create_app(
        Api(repo=repo, ctx=Context(settings=settings or ApiSettings())),
        KeyChecker(FakeKeyStore(repo), cache_ttl_s=0, touch_every_s=0),
        max_body_bytes=max_body_bytes,
    )
    async with TestClient(TestServer(app)) as client:
        yield Client(client.request, None)


@dataclass
class RunningApi:
    settings: ApiSettings
    url: str
    http: aiohttp.ClientSession

    def client(self, key: str | None) -> Client:
        return Client(lambda m, p, **kw: self.http.request(m, self.url + p, **kw), key)


@contextlib.asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[RunningApi]:
    """run_api in this event loop; yields once /readyz answers 200; stopped on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_api(settings, stop, ready=ready))
    url = f"http://{settings.http_host}:{settings.api_port}"
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises the start-up error
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{settings.ops_url('api')}/readyz") as resp:
                assert resp.status == 200, await resp.text()
            yield RunningApi(settings, url, http)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
