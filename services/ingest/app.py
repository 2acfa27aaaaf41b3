"""The gateway application: ``create_app(settings)`` wires handlers to their dependencies.

Resources (Kafka publisher, Postgres pool, the LISTEN connection) start in the app's
cleanup context and stop with it: the HTTP server stops taking requests first, in-flight
requests finish, rejections being recorded are drained, then the producer is flushed.
Neither Kafka nor Postgres has to be up for the app to start: it reports not ready
(``/readyz`` 503) and answers POSTs with 503 until they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from services.ingest import handlers, openapi
from services.ingest.config import ConfigCache
from services.ingest.enqueue import KafkaLink
from services.ingest.handlers import Deps, error_response
from services.ingest.indeterminate import Indeterminate
from services.ingest.limits import ClientAddress, TokenBuckets
from services.ingest.listener import Listener, Waiters
from services.ingest.metrics import REJECTIONS, WebhookLabels
from services.ingest.recent import RecentRequests
from services.ingest.repository import Repository
from services.ingest.settings import IngestSettings
from shared import db
from shared.http import add_ops_routes
from shared.logs import get_logger

log = get_logger(__name__)

DEPS: web.AppKey[Deps] = web.AppKey("deps", Deps)


def create_app(
    settings: IngestSettings,
    *,
    clock: Callable[[], float] = time.time,
    kafka: KafkaLink | None = None,
    workers: int = 1,
) -> web.Application:
    """The gateway app. ``clock`` (epoch seconds) is what signature checks call "now"."""
    waiters = Waiters()
    cache = ConfigCache(
        None,
        ttl_s=settings.config_ttl_s,
        negative_ttl_s=settings.config_negative_ttl_s,
        max_entries=settings.config_cache_size,
    )
    deps = Deps(
        settings=settings,
        cache=cache,
        kafka=kafka or KafkaLink(settings, probe_interval_s=settings.kafka_probe_interval_s),
        waiters=waiters,
        clock=clock,
        recent=RecentRequests(settings.recent_requests_size),
        ip_buckets=TokenBuckets(),
        webhook_buckets=TokenBuckets(),
        client_address=ClientAddress(settings.trusted_proxies),
        labels=WebhookLabels(settings.metrics_max_webhooks),
        workers=max(1, workers),
        indeterminate=Indeterminate(settings.indeterminate_ttl_s),
    )
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
    add_ops_routes(
        app,
        service="ingest",
        checks={"kafka": deps.kafka.ready, "config_db": lambda: deps.repo is not None},
    )
    app.cleanup_ctx.append(functools.partial(_resources, deps=deps))
    return app


async def _resources(_app: web.Application, *, deps: Deps) -> AsyncIterator[None]:
    settings = deps.settings
    pool_box: list[asyncpg.Pool] = []
    listener = Listener(
        settings.database_url,
        on_config=deps.cache.invalidate,
        waiters=deps.waiters,
        on_reconnect=deps.cache.clear,
        on_indeterminate=deps.indeterminate.activate,
    )
    tasks = [
        asyncio.create_task(deps.kafka.run(), name="ingest-kafka"),
        asyncio.create_task(_connect_db(deps, pool_box), name="ingest-db"),
        asyncio.create_task(listener.run(), name="ingest-listener"),
    ]
    try:
        yield
    finally:
        # The server no longer takes requests; finish recording rejections, then flush.
        await deps.background.drain(settings.enqueue_timeout_s + 1)
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pool in pool_box:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)
        log.info("ingest_stopped")


async def _connect_db(deps: Deps, pool_box: list[asyncpg.Pool]) -> None:
    backoff = 0.2
    while True:
        try:
            pool = await _create_pool(deps.settings)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("database_connect_retry", error=type(exc).__name__, backoff_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        pool_box.append(pool)
        # Windows opened by other workers before this one listened.
        await deps.indeterminate.catch_up(pool)
        repo = Repository(pool)
        deps.repo = repo
        deps.cache.set_loader(repo.webhook_config)
        log.info("database_connected")
        return


async def _create_pool(settings: IngestSettings) -> asyncpg.Pool:
    # The gateway's queries are single reads or inserts that leave no session state, so
    # the pool skips the reset query (it doubled the round trips of the idempotency lookup).
    return await db.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        stateless=True,
    )


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


def tune_gc() -> None:
    """Fewer, cheaper collections: move everything alive at startup (modules, compiled
    mappings) out of the collector's view, and collect the young generation less often.
    A request allocates few cycles; full collections over the long-lived caches were the
    main source of tail latency under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


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
    ready_wait_s: float = 0.0,
) -> web.AppRunner:
    """Start serving ``app``; ``await runner.cleanup()`` stops it (gracefully).

    The port is bound once Kafka and the config store answer (or after ``ready_wait_s``
    regardless, and then it answers 503 until they do): with several workers sharing the
    port, a worker still connecting would otherwise take its share of requests only to
    refuse them."""
    runner = IngestRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    deps = app.get(DEPS)
    if deps is not None and ready_wait_s > 0:
        deadline = asyncio.get_running_loop().time() + ready_wait_s
        while not (deps.kafka.ready() and deps.repo is not None):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("ingest_binding_before_ready", waited_s=ready_wait_s)
                break
            await asyncio.sleep(0.05)
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    await site.start()
    return runner
