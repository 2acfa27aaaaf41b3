"""Run the analytics service: consumer, API and dashboard, and background upkeep.

``run_analytics(settings, stop)`` is the whole service (``__main__`` and tests both call
it). On ``stop``: the consumer finishes and commits the batch in hand, streams end, the
HTTP server closes, queued alerts get a last publish attempt, and everything is released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import REGISTRY

from services.analytics import handlers, repository
from services.analytics.alerts import Thresholds
from services.analytics.api import create_app
from services.analytics.exporter import AnalyticsCollector, read_snapshot
from services.analytics.queries import ReadConfig
from services.analytics.settings import AnalyticsSettings
from services.analytics.stream import Hub, listen
from shared import topics
from shared.db import create_pool, migrate, wait_for_database
from shared.events import PerformanceAlert, decode_outcome
from shared.http import serve
from shared.kafka import ConsumerRunner, KafkaUnavailable, Publisher, ensure_topics
from shared.logs import get_logger

log = get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def handler_config(settings: AnalyticsSettings) -> handlers.Config:
    return handlers.Config(
        accuracy=settings.analytics_sketch_accuracy,
        dedupe_days=settings.analytics_dedupe_days,
        thresholds=Thresholds(
            error_rate_percent=settings.analytics_alert_error_rate,
            p95_ms=settings.analytics_alert_p95_ms,
            min_requests=settings.analytics_alert_min_requests,
            window_minutes=settings.analytics_alert_window_minutes,
        ),
    )


async def _every(
    interval_s: float, work: Callable[[], Awaitable[object]], stop: asyncio.Event, name: str
) -> None:
    """Run ``work`` every ``interval_s`` until ``stop``; a failure is logged, not fatal."""
    while not stop.is_set():
        try:
            await work()
        except Exception as exc:  # upkeep; the next round retries
            log.warning("analytics_task_failed", task=name, error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def _start_publisher(settings: AnalyticsSettings, stop: asyncio.Event) -> Publisher:
    backoff = 0.2
    while True:
        publisher = Publisher(settings, client_id="leadwire-analytics")
        try:
            await publisher.start()
            return publisher
        except KafkaUnavailable:
            if stop.is_set():
                raise
            log.warning("kafka_unavailable_retry", backoff_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def run_analytics(
    settings: AnalyticsSettings,
    stop: asyncio.Event,
    *,
    clock: Clock = utc_now,
    started: asyncio.Event | None = None,
) -> None:
    await wait_for_database(settings.database_url)
    await migrate(settings.database_url)
    await ensure_topics(settings, [topics.OUTCOMES, topics.ALERTS, topics.DEADLETTER])
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    collector = AnalyticsCollector()
    REGISTRY.register(collector)
    hub = Hub()
    publisher: Publisher | None = None
    background: list[asyncio.Task[None]] = []
    http = None
    # Ends the background loops: set on stop, or when the consumer dies.
    done = asyncio.Event()
    try:
        publisher = await _start_publisher(settings, stop)
        config = handler_config(settings)
        pub = publisher

        async def publish_alerts(events: Sequence[PerformanceAlert]) -> None:
            await pub.publish_many(topics.ALERTS, [(str(e.webhook_id), e) for e in events])

        runner = ConsumerRunner(
            settings,
            topics=[topics.OUTCOMES],
            group_id=settings.analytics_group,
            decode=decode_outcome,
            handler=handlers.make_batch_handler(
                pool=pool, config=config, publish=publish_alerts, clock=clock
            ),
            publisher=publisher,
            max_batch=settings.analytics_max_batch,
        )

        async def db_ready() -> bool:
            return await repository.ping(pool)

        app = create_app(
            pool=pool,
            hub=hub,
            read=ReadConfig(
                accuracy=settings.analytics_sketch_accuracy,
                recent_errors=min(settings.analytics_recent_errors, 10),
            ),
            checks={"consumer": runner.healthy, "postgres": db_ready},
            clock=clock,
            stream_min_interval_s=settings.analytics_stream_min_interval_s,
            stream_refresh_s=settings.analytics_stream_refresh_s,
        )
        http = await serve(app, settings.http_host, settings.analytics_port)

        async def refresh_metrics() -> None:
            collector.snapshot = await read_snapshot(
                pool,
                max_webhooks=settings.analytics_metrics_max_webhooks,
                accuracy=settings.analytics_sketch_accuracy,
                since=clock() - timedelta(hours=24),
            )

        async def sweep() -> None:
            if await handlers.sweep_alerts(pool, config=config, now=clock()):
                await handlers.flush_alert_outbox(pool, publish=publish_alerts)

        async def retry_outbox() -> None:
            await handlers.flush_alert_outbox(pool, publish=publish_alerts)

        async def prune() -> None:
            now = clock()
            removed = await repository.prune(
                pool,
                counted_before=now - timedelta(days=settings.analytics_dedupe_days),
                minutes_before=now - timedelta(days=settings.analytics_minute_retention_days),
                errors_per_webhook=settings.analytics_recent_errors,
            )
            log.info("analytics_pruned", **removed)

        consumer = asyncio.create_task(runner.run(), name="analytics-consumer")
        background = [
            asyncio.create_task(listen(settings.database_url, hub, done), name="listen"),
            asyncio.create_task(
                _every(settings.analytics_metrics_refresh_s, refresh_metrics, done, "metrics")
            ),
            asyncio.create_task(_every(settings.analytics_alert_sweep_s, sweep, done, "sweep")),
            asyncio.create_task(
                _every(settings.analytics_outbox_retry_s, retry_outbox, done, "outbox")
            ),
        ]
        if settings.analytics_prune_interval_s > 0:
            background.append(
                asyncio.create_task(
                    _every(settings.analytics_prune_interval_s, prune, done, "prune")
                )
            )
        log.info("analytics_started", port=settings.analytics_port)
        if started is not None:
            started.set()

        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({consumer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        runner.stop()
        done.set()
        await consumer  # finishes and commits the batch in hand; re-raises a crash
        hub.close()
        with contextlib.suppress(KafkaUnavailable, OSError, asyncpg.PostgresError):
            await handlers.flush_alert_outbox(pool, publish=publish_alerts)
    finally:
        done.set()
        hub.close()
        if http is not None:
            await http.cleanup()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if publisher is not None:
            await publisher.stop()
        await pool.close()
        REGISTRY.unregister(collector)
        log.info("analytics_stopped")
