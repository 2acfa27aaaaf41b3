"""HTTP: the analytics API, its OpenAPI document, the live stream and the dashboard.

The JSON handlers are plain functions of their path ids and query, with the service's
parts keyword-only (``api``); :data:`ROUTES` binds each to its path, and the same table
makes the router (:func:`create_app`) and the OpenAPI document (:func:`openapi_document`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.analytics import queries
from services.analytics.clock import Clock
from services.analytics.openapi import Route, check_routes, document
from services.analytics.queries import ReadConfig
from services.analytics.repository import AnalyticsRepository
from services.analytics.schemas import (
    SeriesRange,
    Timeseries,
    WebhookAnalytics,
    WorkspaceAnalytics,
    WorkspaceList,
)
from services.analytics.stream import Hub, Subscription
from shared.logs import get_logger

log = get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

Q = TypeVar("Q", bound=BaseModel)


@dataclass(frozen=True)
class Api:
    """What the API's handlers work with."""

    repo: AnalyticsRepository
    read: ReadConfig
    hub: Hub
    clock: Clock
    # Live stream: the least time between two pushes, and the longest without one.
    stream_min_interval_s: float = 0.5
    stream_refresh_s: float = 15.0


API = web.AppKey("analytics_api", Api)

# Postgres away (restart, network): the API answers 503 with a reason.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class BadRequest(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(error)
        self.error, self.detail = error, detail


# --- the JSON API -------------------------------------------------------------------


async def get_webhook(webhook_id: uuid.UUID, *, api: Api) -> WebhookAnalytics | None:
    """A webhook's metrics"""
    return await queries.webhook_analytics(api.repo, webhook_id, cfg=api.read, now=api.clock())


async def get_timeseries(webhook_id: uuid.UUID, query: SeriesRange, *, api: Api) -> Timeseries:
    """A webhook's per-minute buckets over a range"""
    end = query.to or api.clock()
    start = query.from_ or end - timedelta(minutes=59)
    if start > end:
        raise BadRequest("invalid range", "`from` is after `to`")
    if end - start > timedelta(minutes=queries.MAX_SERIES_MINUTES):
        raise BadRequest("range too long", "at most 7 days of minutes per request")
    return await queries.timeseries(api.repo, webhook_id, start, end, cfg=api.read)


async def list_workspaces(*, api: Api) -> WorkspaceList:
    """Workspaces with their request totals"""
    return await queries.workspace_list(api.repo)


async def get_workspace(workspace_id: uuid.UUID, *, api: Api) -> WorkspaceAnalytics | None:
    """A workspace's metrics and each of its webhooks'"""
    return await queries.workspace_analytics(api.repo, workspace_id, cfg=api.read, now=api.clock())


# --- pages and streams --------------------------------------------------------------


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `snapshot` event on every change"""
    api = request.app[API]
    workspace_id = _uuid(request, "workspace_id")
    first = await queries.dashboard_snapshot(api.repo, workspace_id, cfg=api.read, now=api.clock())
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
    sub = api.hub.subscribe(workspace_id)
    try:
        await _push_snapshots(api, resp, sub, first)
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        api.hub.unsubscribe(sub)
    return resp


async def _push_snapshots(
    api: Api, resp: web.StreamResponse, sub: Subscription, first: dict[str, Any]
) -> None:
    """Write a snapshot now, then after every change (at most every
    ``stream_min_interval_s``) and at least every ``stream_refresh_s``, until shutdown."""
    snapshot: dict[str, Any] | None = first
    while not api.hub.closed:
        if snapshot is not None:
            await resp.write(b"event: snapshot\ndata: " + orjson.dumps(snapshot) + b"\n\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.changed.wait(), api.stream_refresh_s)
        if api.hub.closed:
            return
        # Coalesce a burst of batches into one read.
        await asyncio.sleep(api.stream_min_interval_s)
        sub.changed.clear()
        try:
            snapshot = await queries.dashboard_snapshot(
                api.repo, sub.workspace_id, cfg=api.read, now=api.clock()
            )
        except DATABASE_ERRORS:
            snapshot = None  # Postgres away: keep the stream, retry on the next wake
            sub.changed.set()
            await asyncio.sleep(1.0)


async def dashboard(request: web.Request) -> web.StreamResponse:
    """The live dashboard (HTML; its scripts read the API and the stream)"""
    if "workspace_id" in request.match_info:
        _uuid(request, "workspace_id")
    return web.FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})


async def openapi(_request: web.Request) -> web.Response:
    """This document"""
    return _json(openapi_document())


_SSE = (
    "`event: snapshot` with `data:` a JSON object {generated_at, series_start, "
    "series_minutes, workspace (WorkspaceAnalytics), series {webhook_id: {processed, "
    "failed, rejected: [per minute]}}}"
)
_UNAVAILABLE = {503: "Postgres unavailable: retry after `Retry-After` seconds"}

ROUTES: tuple[Route, ...] = (
    Route(
        "/analytics/webhooks/{webhook_id}",
        "getWebhookAnalytics",
        get_webhook,
        description="The webhook's metrics",
        other_answers=_UNAVAILABLE,
    ),
    Route(
        "/analytics/webhooks/{webhook_id}/timeseries",
        "getWebhookTimeseries",
        get_timeseries,
        description="Per-minute buckets, empty minutes included",
        other_answers=_UNAVAILABLE,
    ),
    Route(
        "/analytics/workspaces",
        "listWorkspaces",
        list_workspaces,
        description="Workspaces, most recently active first",
        other_answers=_UNAVAILABLE,
    ),
    Route(
        "/analytics/workspaces/{workspace_id}",
        "getWorkspaceAnalytics",
        get_workspace,
        description="The workspace's metrics",
        other_answers=_UNAVAILABLE,
    ),
    Route(
        "/analytics/workspaces/{workspace_id}/stream",
        "streamWorkspaceAnalytics",
        raw=stream,
        media_type="text/event-stream",
        description=_SSE,
        not_found=True,
        other_answers=_UNAVAILABLE,
    ),
    Route("/openapi.json", "getOpenApi", raw=openapi, description="OpenAPI 3.1"),
    Route("/dashboard", "getDashboard", raw=dashboard, media_type="text/html"),
    Route(
        "/dashboard/{workspace_id}", "getWorkspaceDashboard", raw=dashboard, media_type="text/html"
    ),
    Route(
        "/static/{filename}",
        "getDashboardAsset",
        summary="The dashboard's script and style sheet",
        media_type="*/*",
        not_found=True,
        values={"filename": tuple(sorted(p.name for p in STATIC.iterdir()))},
    ),
    # /healthz, /readyz and /metrics: on the ops listener (LEADWIRE_ANALYTICS_OPS_PORT).
)

INFO = {
    "title": "leadwire analytics",
    "version": "1",
    "description": (
        "Per-webhook and per-workspace request metrics, counted exactly once from the "
        "outcome topic. Rates are percentages, times milliseconds; percentiles come from "
        "DDSketch within `percentile_relative_accuracy`."
    ),
}


@cache
def openapi_document() -> dict[str, Any]:
    return document(ROUTES, info=INFO)


# --- the app --------------------------------------------------------------------------


def create_app(api: Api) -> web.Application:
    """The API, the stream, the dashboard and its files (the ops routes are on the ops
    listener: ``Service.serve_ops``)."""
    check_routes(ROUTES)
    app = web.Application(middlewares=[_database_unavailable])
    app[API] = api
    for route in ROUTES:
        if route.handler is not None:
            app.router.add_get(route.path, _json_endpoint(route))
        elif route.raw is not None:
            app.router.add_get(route.path, route.raw)
    app.router.add_static("/static/", STATIC)
    return app


def _json_endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Bind a typed handler to aiohttp: ids and query in, its model out as JSON (None:
    404; a bad id or query: 400)."""
    sig = route.signature
    handler = route.handler
    assert sig is not None and handler is not None

    async def endpoint(request: web.Request) -> web.Response:
        args: dict[str, Any] = {name: _uuid(request, name) for name in sig.path}
        try:
            if sig.query_arg is not None and sig.query is not None:
                args[sig.query_arg] = _query(request, sig.query)
            body = await handler(**args, api=request.app[API])
        except BadRequest as exc:
            return _problem(400, exc.error, exc.detail)
        if body is None:
            name = sig.path[0]
            return _problem(404, f"{name.removesuffix('_id')} not found", str(args[name]))
        return _json(body.model_dump(mode="json", by_alias=True))

    return endpoint


@web.middleware
async def _database_unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Postgres away (restart, network): 503 with a reason, not a 500 and a traceback."""
    try:
        return await handler(request)
    except DATABASE_ERRORS as exc:
        log.warning("analytics_request_db_unavailable", path=request.path, error=type(exc).__name__)
        resp = _problem(503, "database unavailable", "retry shortly")
        resp.headers["Retry-After"] = "2"
        return resp


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


def _query(request: web.Request, model: type[Q]) -> Q:
    """The query string as ``model`` (an empty parameter is an absent one)."""
    names = [info.alias or name for name, info in model.model_fields.items()]
    raw = {name: value for name in names if (value := request.query.get(name))}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise BadRequest(f"invalid {error['loc'][0]}", error["msg"]) from None
