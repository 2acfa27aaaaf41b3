"""HTTP: the analytics API, its OpenAPI document, the live stream and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from aiohttp import web

from services.analytics import queries
from services.analytics.openapi import openapi_document
from services.analytics.queries import ReadConfig
from services.analytics.stream import Hub
from shared.http import ReadyCheck, add_ops_routes
from shared.logs import get_logger

log = get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

Clock = Callable[[], datetime]


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _problem(status: int, error: str, detail: str | None = None) -> web.Response:
    return _json({"error": error, "detail": detail}, status)


def _uuid(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": f"invalid {name}", "detail": "expected a UUID"}).decode(),
            content_type="application/json",
        ) from None


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise web.HTTPBadRequest(
            text=orjson.dumps(
                {"error": f"invalid {name}", "detail": "expected an ISO 8601 date-time"}
            ).decode(),
            content_type="application/json",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@web.middleware
async def _database_unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Postgres away (restart, network): 503 with a reason, not a 500 and a traceback."""
    try:
        return await handler(request)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("analytics_request_db_unavailable", path=request.path, error=type(exc).__name__)
        resp = _problem(503, "database unavailable", "retry shortly")
        resp.headers["Retry-After"] = "2"
        return resp


def create_app(
    *,
    pool: asyncpg.Pool,
    hub: Hub,
    read: ReadConfig,
    checks: Mapping[str, ReadyCheck],
    clock: Clock,
    stream_min_interval_s: float = 0.5,
    stream_refresh_s: float = 15.0,
) -> web.Application:
    app = web.Application(middlewares=[_database_unavailable])

    async def get_webhook(request: web.Request) -> web.Response:
        webhook_id = _uuid(request, "webhook_id")
        found = await queries.webhook_analytics(pool, webhook_id, cfg=read, now=clock())
        if found is None:
            return _problem(404, "webhook not found", str(webhook_id))
        return _json(found.model_dump(mode="json"))

    async def get_timeseries(request: web.Request) -> web.Response:
        webhook_id = _uuid(request, "webhook_id")
        end = _time(request, "to", clock())
        start = _time(request, "from", end - timedelta(minutes=59))
        if start > end:
            return _problem(400, "invalid range", "`from` is after `to`")
        if end - start > timedelta(minutes=queries.MAX_SERIES_MINUTES):
            return _problem(400, "range too long", "at most 7 days of minutes per request")
        series = await queries.timeseries(pool, webhook_id, start, end, cfg=read)
        return _json(series.model_dump(mode="json", by_alias=True))

    async def list_workspaces(_request: web.Request) -> web.Response:
        return _json((await queries.workspace_list(pool)).model_dump(mode="json"))

    async def get_workspace(request: web.Request) -> web.Response:
        workspace_id = _uuid(request, "workspace_id")
        found = await queries.workspace_analytics(pool, workspace_id, cfg=read, now=clock())
        if found is None:
            return _problem(404, "workspace not found", str(workspace_id))
        return _json(found.model_dump(mode="json"))

    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: a ``snapshot`` on connect, then after every change (at most
        every ``stream_min_interval_s``) and at least every ``stream_refresh_s``."""
        workspace_id = _uuid(request, "workspace_id")
        first = await queries.dashboard_snapshot(pool, workspace_id, cfg=read, now=clock())
        if first is None:
            return _problem(404, "workspace not found", str(workspace_id))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        sub = hub.subscribe(workspace_id)
        snapshot: dict[str, object] | None = first
        try:
            while not hub.closed:
                if snapshot is not None:
                    await resp.write(b"event: snapshot\ndata: " + orjson.dumps(snapshot) + b"\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.changed.wait(), stream_refresh_s)
                if hub.closed:
                    break
                # Coalesce a burst of batches into one read.
                await asyncio.sleep(stream_min_interval_s)
                sub.changed.clear()
                try:
                    snapshot = await queries.dashboard_snapshot(
                        pool, workspace_id, cfg=read, now=clock()
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    snapshot = None  # Postgres away: keep the stream, retry on the next wake
                    sub.changed.set()
                    await asyncio.sleep(1.0)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            hub.unsubscribe(sub)
        return resp

    async def openapi(_request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def dashboard(request: web.Request) -> web.StreamResponse:
        if "workspace_id" in request.match_info:
            _uuid(request, "workspace_id")
        return web.FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/analytics/webhooks/{webhook_id}", get_webhook)
    app.router.add_get("/analytics/webhooks/{webhook_id}/timeseries", get_timeseries)
    app.router.add_get("/analytics/workspaces", list_workspaces)
    app.router.add_get("/analytics/workspaces/{workspace_id}", get_workspace)
    app.router.add_get("/analytics/workspaces/{workspace_id}/stream", stream)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/dashboard/{workspace_id}", dashboard)
    app.router.add_static("/static/", STATIC)
    add_ops_routes(app, service="analytics", checks=checks)
    return app
