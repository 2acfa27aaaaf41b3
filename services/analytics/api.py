"""HTTP: the analytics API, its OpenAPI document, the live stream and the dashboard.

The JSON handlers are plain functions of their path ids and query, with the service's
parts and the caller keyword-only (``api``, ``principal``); :data:`ROUTES` binds each to
its path, and the same table makes the router (:func:`create_app`) and the OpenAPI
document (:func:`openapi_document`). Who may read what is :mod:`services.analytics.auth`'s:
every route but the public ones needs a key or a session, and a workspace's key sees its
workspace only (another's ids answer 404, as unknown ones).
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

from services.analytics import auth, queries
from services.analytics.auth import ACCESS, Access, sees
from services.analytics.clock import Clock
from services.analytics.openapi import Route, check_routes, document
from services.analytics.queries import ReadConfig
from services.analytics.repository import AnalyticsRepository
from services.analytics.schemas import (
    SeriesRange,
    Timeseries,
    VendorScorecards,
    WebhookAnalytics,
    WorkspaceAnalytics,
    WorkspaceList,
)
from services.analytics.stream import Hub, Subscription
from shared.apikeys import PRINCIPAL, Principal
from shared.logs import get_logger

log = get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The only bodies the service reads are the sign-in form's.
MAX_BODY_BYTES = 16 * 1024

Q = TypeVar("Q", bound=BaseModel)


@dataclass(frozen=True)
class Api:
    """What the API's handlers work with."""

    repo: AnalyticsRepository
    read: ReadConfig
    hub: Hub
    clock: Clock
    # Live stream: the least time between two pushes, and the longest without one; how
    # often its credential is checked again (it ends when the key no longer works).
    stream_min_interval_s: float = 0.5
    stream_refresh_s: float = 15.0
    stream_recheck_s: float = 2.0


API = web.AppKey("analytics_api", Api)

# Postgres away (restart, network): the API answers 503 with a reason.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class BadRequest(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(error)
        self.error, self.detail = error, detail


# --- the JSON API -------------------------------------------------------------------


async def get_webhook(
    webhook_id: uuid.UUID, *, api: Api, principal: Principal
) -> WebhookAnalytics | None:
    """A webhook's metrics"""
    found = await queries.webhook_analytics(api.repo, webhook_id, cfg=api.read, now=api.clock())
    return found if found is not None and sees(principal, found.workspace_id) else None


async def get_timeseries(
    webhook_id: uuid.UUID, query: SeriesRange, *, api: Api, principal: Principal
) -> Timeseries | None:
    """A webhook's per-minute buckets over a range"""
    end = query.to or api.clock()
    start = query.from_ or end - timedelta(minutes=59)
    if start > end:
        raise BadRequest("invalid range", "`from` is after `to`")
    if end - start > timedelta(minutes=queries.MAX_SERIES_MINUTES):
        raise BadRequest("range too long", "at most 7 days of minutes per request")
    row = await api.repo.webhook_row(webhook_id)
    if row is None or not sees(principal, row["workspace_id"]):
        return None
    return await queries.timeseries(api.repo, webhook_id, start, end, cfg=api.read)


async def list_workspaces(*, api: Api, principal: Principal) -> WorkspaceList:
    """Workspaces with their request totals (a workspace's key: its own)"""
    listed = await queries.workspace_list(api.repo)
    if principal.operator:
        return listed
    return WorkspaceList(
        workspaces=[w for w in listed.workspaces if w.workspace_id == principal.workspace_id]
    )


async def get_workspace(
    workspace_id: uuid.UUID, *, api: Api, principal: Principal
) -> WorkspaceAnalytics | None:
    """A workspace's metrics and each of its webhooks'"""
    if not sees(principal, workspace_id):
        return None
    return await queries.workspace_analytics(api.repo, workspace_id, cfg=api.read, now=api.clock())


async def get_vendors(
    workspace_id: uuid.UUID, *, api: Api, principal: Principal
) -> VendorScorecards | None:
    """Vendor scorecards: each webhook's leads over 24 h, 7 d and 30 d"""
    if not sees(principal, workspace_id):
        return None
    return await queries.vendor_scorecards(api.repo, workspace_id, now=api.clock())


# --- pages and streams --------------------------------------------------------------


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `snapshot` event on every change"""
    api = request.app[API]
    workspace_id = _uuid(request, "workspace_id")
    first = None
    if sees(request[PRINCIPAL], workspace_id):
        first = await queries.dashboard_snapshot(
            api.repo, workspace_id, cfg=api.read, now=api.clock()
        )
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
    access = request.app[ACCESS]
    try:
        await _push_snapshots(api, resp, sub, first, lambda: access.still_allowed(request))
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        api.hub.unsubscribe(sub)
    return resp


async def _push_snapshots(
    api: Api,
    resp: web.StreamResponse,
    sub: Subscription,
    first: dict[str, Any],
    allowed: Callable[[], Awaitable[bool]],
) -> None:
    """Write a snapshot now, then after every change (at most every
    ``stream_min_interval_s``) and at least every ``stream_refresh_s``, until shutdown or
    until the credential stops working (checked every ``stream_recheck_s``)."""
    snapshot: dict[str, Any] | None = first
    loop = asyncio.get_running_loop()
    while not api.hub.closed:
        if snapshot is not None:
            await resp.write(b"event: snapshot\ndata: " + orjson.dumps(snapshot) + b"\n\n")
        refresh_at = loop.time() + api.stream_refresh_s
        while not sub.changed.is_set() and loop.time() < refresh_at and not api.hub.closed:
            wait = min(api.stream_recheck_s, max(refresh_at - loop.time(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.changed.wait(), wait)
            if not await allowed():
                return  # the key was revoked, expired or its session ended
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


async def openapi(_request: web.Request) -> web.Response:
    """This document"""
    return _json(openapi_document())


_SSE = (
    "`event: snapshot` with `data:` a JSON object {generated_at, series_start, "
    "series_minutes, workspace (WorkspaceAnalytics), series {webhook_id: {processed, "
    "failed, rejected: [per minute]}}}"
)
_UNAVAILABLE = {503: "Postgres unavailable: retry after `Retry-After` seconds"}
_PAGE_DOWN = {503: "Postgres unavailable: try again shortly"}

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
        "/analytics/workspaces/{workspace_id}/vendors",
        "getVendorScorecards",
        get_vendors,
        description="Per webhook: received, accepted, rejected by reason, failed, acceptance "
        "and new-contact rates, speed-to-lead (received -> first email or SMS sent), over "
        "the last 24 h, 7 d and 30 d (whole minutes, as `last_24h`), all read in one snapshot",
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
    Route("/openapi.json", "getOpenApi", raw=openapi, description="OpenAPI 3.1", public=True),
    *(
        Route(
            path,
            operation_id,
            raw=auth.dashboard,
            media_type="text/html",
            public=True,  # the page asks for the session itself
            html_answers={401: "No session: the sign-in form", **_PAGE_DOWN},
        )
        for path, operation_id in (
            ("/", "getRoot"),
            ("/dashboard", "getDashboard"),
            ("/dashboard/{workspace_id}", "getWorkspaceDashboard"),
        )
    ),
    Route(
        "/login",
        "getSignIn",
        raw=auth.show_login,
        media_type="text/html",
        public=True,
    ),
    Route(
        "/login",
        "signIn",
        raw=auth.login,
        method="post",
        public=True,
        redirect="Signed in: the session cookie (HttpOnly, SameSite=Strict), and the dashboard",
        html_answers={
            400: "Not a form: the form again",
            401: "The key does not work: the form again",
            **_PAGE_DOWN,
        },
        other_answers={403: "Posted from another site"},
        form={
            "type": "object",
            "properties": {
                "key": {"type": "string", "maxLength": 200, "description": "an API key"},
                "next": {"type": "string", "description": "the dashboard page to go to"},
            },
            "required": ["key"],
        },
    ),
    Route(
        "/logout",
        "signOut",
        raw=auth.logout,
        method="post",
        public=True,
        redirect="Signed out: the cookie cleared, and the sign-in form",
        other_answers={403: "Posted from another site", **_UNAVAILABLE},
    ),
    Route(
        "/static/{filename}",
        "getDashboardAsset",
        summary="The dashboard's script and style sheet",
        media_type="*/*",
        not_found=True,
        public=True,
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


def create_app(api: Api, access: Access) -> web.Application:
    """The API, the stream, the dashboard, its sign-in and its files, behind the key
    check (the ops routes are on the ops listener: ``Service.serve_ops``)."""
    check_routes(ROUTES)
    app = web.Application(
        middlewares=[_database_unavailable, auth.middleware(access)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[API] = api
    app[ACCESS] = access
    for route in ROUTES:
        if route.handler is not None:
            app.router.add_get(route.path, _json_endpoint(route))
        elif route.raw is not None and route.method == "get":
            app.router.add_get(route.path, route.raw)
        elif route.raw is not None:
            app.router.add_route(route.method.upper(), route.path, route.raw)
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
            body = await handler(**args, api=request.app[API], principal=request[PRINCIPAL])
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
