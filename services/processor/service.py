"""Running a processor: pool, publisher, consumer runner and ops HTTP, started and stopped
in order. ``__main__`` calls :func:`run_processor`; tests call it in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from aiokafka.errors import KafkaError

from services.processor import repository
from services.processor.handlers import AfterCommit, BatchHandler, Incoming, decode_message
from services.processor.settings import ProcessorSettings
from shared import topics
from shared.db import create_pool, wait_for_database
from shared.http import add_ops_routes, serve
from shared.kafka import ConsumerRunner, KafkaUnavailable, Publisher, ensure_topics
from shared.logs import get_logger

log = get_logger(__name__)


async def _retry_until(
    stop: asyncio.Event, what: str, attempt: Callable[[], Awaitable[object]]
) -> None:
    """Await ``attempt()`` until it succeeds or ``stop`` is set (dependencies may start
    after the processor; it waits for them instead of crash-looping)."""
    delay = 0.2
    while True:
        try:
            await attempt()
            return
        except (OSError, TimeoutError, asyncpg.PostgresError, KafkaError, KafkaUnavailable) as exc:
            if stop.is_set():
                raise
            log.warning("dependency_unavailable", what=what, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)


async def run_processor(
    settings: ProcessorSettings,
    stop: asyncio.Event,
    *,
    serve_http: bool = True,
    after_commit: AfterCommit | None = None,
) -> None:
    """Process the raw topic until ``stop`` is set; then finish the batch in hand, publish
    its outcomes, commit its offsets and return."""
    pools: list[asyncpg.Pool] = []

    async def open_pool() -> None:
        await wait_for_database(settings.database_url, deadline_s=10)
        pools.append(
            await create_pool(
                settings.database_url,
                min_size=settings.db_pool_min,
                max_size=max(settings.db_pool_max, 2),
            )
        )

    await _retry_until(stop, "postgres", open_pool)
    pool = pools[0]
    publisher = Publisher(settings, client_id="leadwire-processor")
    http: web.AppRunner | None = None
    try:
        await _retry_until(stop, "kafka", publisher.start)
        await _retry_until(
            stop,
            "kafka topics",
            lambda: ensure_topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER)),
        )
        handler = BatchHandler(
            pool=pool, publisher=publisher, settings=settings, after_commit=after_commit
        )
        runner: ConsumerRunner[Incoming] = ConsumerRunner(
            settings,
            topics=[topics.RAW],
            group_id=settings.processor_group,
            decode=decode_message,
            handler=handler,
            publisher=publisher,
            max_batch=settings.processor_batch_max,
            # At a steady 500 leads/s aiokafka's default 500 ms fetch wait alone put p50
            # latency near 500 ms.
            fetch_max_wait_ms=settings.processor_fetch_max_wait_ms,
        )

        async def database_ready() -> bool:
            async with pool.acquire(timeout=2) as conn:
                return await repository.ping(conn)

        if serve_http:
            app = web.Application()
            add_ops_routes(
                app,
                service="processor",
                checks={"consumer": runner.healthy, "database": database_ready},
            )
            http = await serve(app, settings.http_host, settings.processor_port)
        log.info("processor_started", group=settings.processor_group)
        task = asyncio.create_task(runner.run())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            runner.stop()
            stopper.cancel()
            await task  # finishes the batch in hand, commits, stops the consumer
        log.info("processor_stopped")
    finally:
        if http is not None:
            await http.cleanup()
        await publisher.stop()
        await pool.close()
