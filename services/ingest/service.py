"""Assembling the gateway on the shared skeleton (:mod:`shared.service`).

Parts: the Kafka link (publisher and probe, enqueue.py), the Postgres pool, the LISTEN
connection (config changes, finished requests, indeterminate 503s: listener.py) and the
HTTP server (app.py) on the public port, and /healthz, /readyz and /metrics on the ops
listener (``LEADWIRE_INGEST_OPS_PORT``, 9080; every worker shares both ports). Neither
Kafka nor Postgres has to be up to start: the gateway reports not ready (``/readyz`` 503)
and answers POSTs with 503 until they are; a worker binds its public port once both
answer (or after ``startup_ready_wait_s`` regardless).

On stop (SIGTERM), phase by phase: the server stops taking connections, in-flight requests
finish and the rejections being recorded are drained (phase 0, Kafka still up); then the
listener stops and the producer is flushed (phase 1); then the pool closes.

``__main__`` runs :func:`run_ingest` in every worker process; tests run
:func:`start_gateway` on a :class:`~shared.service.Service` of their own.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable

from aiohttp import web

from services.ingest import fetcher
from services.ingest.app import create_app, serve
from services.ingest.config import ConfigCache
from services.ingest.deps import Deps
from services.ingest.enqueue import KafkaLink
from services.ingest.graph import GraphClient
from services.ingest.indeterminate import Indeterminate
from services.ingest.limits import ClientAddress, TokenBuckets
from services.ingest.listener import Listener, Waiters
from services.ingest.metrics import WebhookLabels
from services.ingest.recent import RecentRequests
from services.ingest.repository import PgRepository
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import LeadReceived, decode_raw
from shared.kafka import ConsumerRunner
from shared.logs import get_logger
from shared.retry import Stopped
from shared.runtime import tune_gc
from shared.service import Service

log = get_logger(__name__)


async def run_ingest(
    settings: IngestSettings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    workers: int = 1,
) -> None:
    """Serve the gateway until ``stop`` is set; then drain and return. ``workers``: how
    many processes share the port (and the rate limits)."""
    async with Service("ingest", stop, ready=ready) as svc:
        await start_gateway(
            svc, settings, workers=workers, ready_wait_s=settings.startup_ready_wait_s
        )
        tune_gc()
        log.info(
            "ingest_listening", host=settings.http_host, port=settings.ingest_port, pid=os.getpid()
        )
        await svc.run()


async def start_gateway(
    svc: Service,
    settings: IngestSettings,
    *,
    host: str | None = None,
    workers: int = 1,
    clock: Callable[[], float] = time.time,
    ready_wait_s: float = 0.0,
    shutdown_timeout_s: float = 10.0,
) -> web.Application:
    """Start the gateway's parts on ``svc`` and serve it on ``settings.ingest_port``.
    ``clock`` (epoch seconds) is what signature checks call "now"."""
    deps = _deps(settings, workers=workers, clock=clock)
    listener = Listener(
        settings.database_url,
        on_config=deps.cache.invalidate,
        waiters=deps.waiters,
        on_reconnect=deps.cache.clear,
        on_indeterminate=deps.indeterminate.activate,
    )
    svc.task("kafka", deps.kafka.run(), phase=1)
    svc.task("database", _connect_database(svc, deps), phase=1, critical=False)
    svc.task("listener", listener.run(), phase=1)
    # The ops listener answers at once (503 until ready); every worker shares its port.
    # Ready includes the public port being bound (serve binds it just after Kafka and the
    # config store answer), so a caller that waited for /readyz can connect at once.
    listening = asyncio.Event()
    await svc.serve_ops(
        settings,
        checks={
            "kafka": deps.kafka.ready,
            "config_db": lambda: deps.repo is not None,
            "listening": listening.is_set,
        },
        reuse_port=workers > 1,
    )
    fetching = asyncio.Event()
    svc.task("facebook", _fetch_leads(svc, deps, fetching), on_stop=fetching.set, phase=0)
    app = create_app(deps)
    runner = await serve(
        app,
        host or settings.http_host,
        settings.ingest_port,
        reuse_port=workers > 1,
        shutdown_timeout=shutdown_timeout_s,
        ready=lambda: deps.kafka.ready() and deps.repo is not None,
        ready_wait_s=ready_wait_s,
        stop=svc.stop,
    )
    listening.set()
    stopping = asyncio.Event()
    svc.task("http", _serve_http(runner, deps, stopping), on_stop=stopping.set, phase=0)
    return app


def _deps(settings: IngestSettings, *, workers: int, clock: Callable[[], float]) -> Deps:
    return Deps(
        settings=settings,
        cache=ConfigCache(
            None,
            ttl_s=settings.config_ttl_s,
            negative_ttl_s=settings.config_negative_ttl_s,
            max_entries=settings.config_cache_size,
        ),
        kafka=KafkaLink(settings, probe_interval_s=settings.kafka_probe_interval_s),
        waiters=Waiters(),
        clock=clock,
        recent=RecentRequests(settings.recent_requests_size),
        ip_buckets=TokenBuckets(),
        webhook_buckets=TokenBuckets(),
        client_address=ClientAddress(settings.trusted_proxies),
        labels=WebhookLabels(settings.metrics_max_webhooks),
        workers=max(1, workers) * settings.ingest_hosts,  # limits shared out (docs/ingest.md)
        indeterminate=Indeterminate(settings.indeterminate_ttl_s),
    )


async def _connect_database(svc: Service, deps: Deps) -> None:
    """Wait for Postgres, then load config and look requests up through it."""
    settings = deps.settings
    # The gateway's queries are single reads or inserts that leave no session state, so
    # the pool skips the reset query (it doubled the round trips of the idempotency lookup).
    try:
        pool = await svc.pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            stateless=True,
        )
    except Stopped:
        return  # stopped before Postgres came
    repo = PgRepository(pool)
    # Windows opened by other workers before this one listened.
    await deps.indeterminate.catch_up(repo)
    deps.connected(repo)
    log.info("database_connected")


async def _fetch_leads(svc: Service, deps: Deps, stopping: asyncio.Event) -> None:
    """Consume the fetch topic: Facebook leads fetched from the Graph API (fetcher.py),
    until ``stopping`` (the batch in hand finishes and is committed first)."""
    settings = deps.settings
    graph = GraphClient(
        settings.facebook_graph_url,
        timeout_s=settings.facebook_fetch_timeout_s,
        retry_s=settings.facebook_fetch_retry_s,
    )
    svc.cleanup(graph.close)
    try:
        publisher = await svc.publisher(settings, client_id="leadwire-ingest-facebook")
    except Stopped:
        return
    runner: ConsumerRunner[LeadReceived] = ConsumerRunner(
        settings,
        topics=[topics.FETCH],
        group_id=settings.facebook_fetch_group,
        decode=decode_raw,
        handler=functools.partial(fetcher.handle_batch, deps=deps, graph=graph),
        publisher=publisher,
        max_batch=100,
    )

    async def stop_when_asked() -> None:
        await stopping.wait()
        runner.stop()

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await runner.run()
    finally:
        watcher.cancel()


async def _serve_http(runner: web.AppRunner, deps: Deps, stopping: asyncio.Event) -> None:
    """Serve until ``stopping``; then stop taking connections, let in-flight requests
    finish, and finish recording their rejections (Kafka is still up)."""
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        await deps.background.drain(deps.settings.enqueue_timeout_s + 1)
