"""The gateway's HTTP application: routes to the handlers with their dependencies, JSON
errors for aiohttp's own answers, 431 for oversized headers, and serving it.

The resources behind it (Kafka, Postgres, the LISTEN connection) are started and stopped
by service.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from services.ingest import handlers, openapi
from services.ingest.deps import Deps
from services.ingest.metrics import REJECTIONS
from services.ingest.responses import error_response
from shared.logs import get_logger

log = get_logger(__name__)

DEPS: web.AppKey[Deps] = web.AppKey("deps", Deps)


def create_app(deps: Deps) -> web.Application:
    """The routes, each bound to its handler with ``deps`` (keyword-only)."""
    settings = deps.settings
    app = web.Application(
        middlewares=[_json_errors],
        handler_args={
            "max_field_size": settings.max_header_bytes,
            "max_line_size": settings.max_header_bytes,
            "max_headers": settings.max_headers,
        },
    )
    app[DEPS] = deps
    app.router.add_post("/webhooks/{webhook_id}", functools.partial(handlers.receive, deps=deps))
    app.router.add_get(
        "/webhooks/{webhook_id}",
        functools.partial(handlers.verify_subscription, deps=deps),
        allow_head=False,
    )
    app.router.add_get(
        "/webhooks/{webhook_id}/requests/{request_id}",
        functools.partial(handlers.request_status, deps=deps),
        allow_head=False,
    )
    app.router.add_get("/openapi.json", openapi.spec_handler, allow_head=False)
    app.router.add_get("/docs", openapi.docs_handler, allow_head=False)
    # /healthz, /readyz and /metrics are on the ops listener (service.py), not here:
    # the metrics name every webhook id the gateway has seen.
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own 404/405 answers as JSON errors, like every other refusal."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "error")
        return error_response(exc.status, code, exc.reason, headers=headers)


# --- serving --------------------------------------------------------------------------


class _RequestHandler(RequestHandler):
    """aiohttp answers an oversized header line or too many headers with 400; the right
    answer is 431, without logging the header (it may hold a secret)."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        too_large = isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower()
        )
        if too_large:
            REJECTIONS.labels("headers_too_large").inc()
            response = error_response(431, "headers_too_large", "request header fields too large")
            response.force_close()
            return response
        if isinstance(exc, BadHttpMessage):
            REJECTIONS.labels("bad_request").inc()
            response = error_response(400, "bad_request", "malformed HTTP request")
            response.force_close()
            return response
        return super().handle_error(request, status, exc, message)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class IngestRunner(web.AppRunner):
    """An AppRunner whose connections use :class:`_RequestHandler` (431 for big headers)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same state, one method different: only the protocol factory changes.
        server.__class__ = _Server
        return server


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    ready: Callable[[], bool] | None = None,
    ready_wait_s: float = 0.0,
    stop: asyncio.Event | None = None,
) -> web.AppRunner:
    """Start serving ``app``; ``await runner.cleanup()`` stops it (gracefully).

    The port is bound once ``ready()`` (Kafka and the config store answer), or after
    ``ready_wait_s`` regardless (then it answers 503 until they do), or at ``stop``: with
    several workers sharing the port, a worker still connecting would otherwise take its
    share of requests only to refuse them."""
    runner = IngestRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    if ready is not None and ready_wait_s > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_wait_s
        while not ready() and not (stop is not None and stop.is_set()):
            if loop.time() > deadline:
                log.warning("ingest_binding_before_ready", waited_s=ready_wait_s)
                break
            await asyncio.sleep(0.05)
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    await site.start()
    return runner
