"""Analytics test helpers: the service run in-process, and headless Chromium for the
dashboard. (Outcome events come from :mod:`tests.support.events`.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.analytics.auth import Access
from services.analytics.clock import Clock
from services.analytics.service import run_analytics
from services.analytics.sessions import MemorySessions, Sessions
from services.analytics.settings import AnalyticsSettings
from shared.apikeys import KeyChecker, StoredKey, key_digest, new_key
from shared.settings import CommonSettings
from tests.support.api import db_key
from tests.support.net import free_port


def analytics_settings(settings: CommonSettings, **overrides: Any) -> AnalyticsSettings:
    values = settings.model_dump()
    values.update(
        analytics_port=free_port(),
        analytics_ops_port=free_port(),
        analytics_metrics_refresh_s=0.5,
        analytics_stream_min_interval_s=0.1,
        analytics_prune_interval_s=0,
        log_format="json",
    )
    values.update(overrides)
    return AnalyticsSettings(**values)


class MemoryKeys:
    """An in-memory ``api_keys`` table (:class:`shared.apikeys.KeyStore`) for unit tests."""

    def __init__(self) -> None:
        self.rows: dict[bytes, StoredKey] = {}

    def add(self, workspace_id: uuid.UUID | None, scope: str = "read") -> str:
        made = new_key()
        self.rows[made.digest] = StoredKey(uuid.uuid4(), workspace_id, scope, None, None, True)  # type: ignore[arg-type]
        return made.key

    def revoke(self, key: str) -> None:
        digest = key_digest(key)
        self.rows[digest] = dataclasses.replace(self.rows[digest], revoked_at=datetime.now(UTC))

    async def find(self, digest: bytes) -> StoredKey | None:
        return self.rows.get(digest)

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        return None


def memory_access(clock: Clock, **sessions: Any) -> tuple[Access, MemoryKeys]:
    """Keys and sessions in memory, checked without a cache (a revoke counts at once)."""
    keys = MemoryKeys()
    checker = KeyChecker(keys, cache_ttl_s=0, touch_every_s=0)
    return Access(checker, Sessions(MemorySessions(), checker, clock, **sessions)), keys


@dataclass
class RunningAnalytics:
    settings: AnalyticsSettings
    stop: asyncio.Event
    task: asyncio.Task[None]
    # An operator's read key: every request sends it unless told otherwise (key=None).
    key: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.analytics_port}"

    @property
    def ops_url(self) -> str:
        """Where /healthz, /readyz and /metrics answer (the ops listener)."""
        return self.settings.ops_url("analytics")

    async def ops_get(self, path: str) -> tuple[int, str]:
        """``path`` of the ops listener: (status, text)."""
        async with aiohttp.ClientSession() as http, http.get(self.ops_url + path) as resp:
            return resp.status, await resp.text()

    def headers(self, key: str | None = "") -> dict[str, str]:
        """The Authorization header of ``key`` (default: the operator's; None: none)."""
        key = self.key if key == "" else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def get(self, path: str, *, key: str | None = "", **params: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + path, params=params, headers=self.headers(key)) as resp,
        ):
            body = await resp.read()
            if resp.content_type == "application/json":
                import orjson

                return resp.status, orjson.loads(body)
            return resp.status, body.decode()

    async def shutdown(self, deadline_s: float = 30) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, deadline_s)


@contextlib.asynccontextmanager
async def running_analytics(
    settings: AnalyticsSettings, *, clock: Any = None
) -> AsyncIterator[RunningAnalytics]:
    """run_analytics in this event loop; yields once /readyz answers 200, with an
    operator's read key made in its database (``running.key``)."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    kwargs: dict[str, Any] = {"ready": ready}
    if clock is not None:
        kwargs["clock"] = clock
    key = await db_key(settings.database_url, None, "read", name="analytics tests")
    task = asyncio.create_task(run_analytics(settings, stop, **kwargs))
    running = RunningAnalytics(settings, stop, task, key)
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises the start-up error
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while True:
            status, _ = await running.ops_get("/readyz")
            if status == 200:
                break
            assert loop.time() < end, "analytics not ready in 60 s"
            await asyncio.sleep(0.1)
        yield running
    finally:
        if not task.done():
            stop.set()
            await asyncio.wait_for(task, 30)


async def seed_webhooks(
    database_url: str,
    workspace_id: uuid.UUID,
    workspace_name: str,
    webhooks: Mapping[uuid.UUID, str],
) -> None:
    """A named workspace and its named webhooks, straight into the tables (the names are
    what the analytics answers and the dashboard show)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2)", workspace_id, workspace_name
        )
        await conn.executemany(
            "INSERT INTO webhooks (id, workspace_id, name) VALUES ($1, $2, $3)",
            [(hook, workspace_id, name) for hook, name in webhooks.items()],
        )
    finally:
        await conn.close()


async def wait_total(
    running: RunningAnalytics, webhook_id: uuid.UUID, total: int, deadline_s: float = 30
) -> dict[str, Any]:
    """Poll the webhook's figures until its total reaches ``total``."""
    from tests.support.polling import eventually

    async def probe() -> dict[str, Any]:
        status, body = await running.get(f"/analytics/webhooks/{webhook_id}")
        return body if status == 200 else {}

    return await eventually(
        probe,
        until=lambda b: bool(b) and b["metrics"]["total_requests"] >= total,
        deadline_s=deadline_s,
        what=f"webhook {webhook_id} total >= {total}",
    )


# --- headless Chromium over the DevTools protocol ------------------------------------


def chromium_binary() -> str:
    """The Chromium to drive. Missing: on CI (``CI=true``) the test fails, since CI must
    run the dashboard test; elsewhere it is skipped, saying why."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is not None:
        return binary
    reason = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI must run the dashboard test", pytrace=False)
    print(f"{reason}; dashboard test skipped")
    pytest.skip(f"{reason}; dashboard test skipped")


class Chromium:
    """Debian's chromium, headless, driven over CDP (aiohttp websockets, no extra deps)."""

    def __init__(self, binary: str, user_data_dir: str) -> None:
        self.binary = binary
        self.user_data_dir = user_data_dir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0

    async def __aenter__(self) -> Chromium:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-allow-origins=*",
            f"--user-data-dir={self.user_data_dir}",
            f"--remote-debugging-port={self.port}",
            "--window-size=1280,1600",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        targets: list[dict[str, Any]] = []
        while True:
            try:
                async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if targets:
                    break
            except (aiohttp.ClientError, OSError):
                pass
            if loop.time() > end or self.proc.returncode is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.1)
        self._ws = await self._http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        my_id = self._next_id
        await self._ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self._ws.receive_json(), 30)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result.get("result", {}).get("value")

    async def screenshot(self, path: str) -> None:
        import base64
        from pathlib import Path

        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=1400,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])

        def _write() -> None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)

        await asyncio.to_thread(_write)
