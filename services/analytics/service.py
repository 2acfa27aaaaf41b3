"""Assembling analytics on the shared skeleton (:mod:`shared.service`): the outcome
consumer, the dead-letter consumer (counts per webhook, the growth alert), the API and
dashboard behind API keys and dashboard sessions, the live-update listener and the
periodic upkeep.
``__main__`` calls :func:`run_analytics`; tests call it in-process.

Migrations are not run here: ``leadwire db migrate`` runs before the services (the
launcher, the compose ``migrate`` job), as for every service.

On ``stop`` (SIGTERM): the consumer finishes and commits the batch in hand, the listener
and the upkeep end, streams end, the HTTP server closes, queued alerts get a last publish
attempt, then the producer and the pool close. A crash of the consumer does the same and
then raises, so the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from prometheus_client import REGISTRY

from services.analytics import handlers
from services.analytics.alerts import Thresholds
from services.analytics.api import Api, create_app
from services.analytics.auth import Access
from services.analytics.clock import Clock, utc_now
from services.analytics.deadletter_repository import PostgresDeadLetters
from services.analytics.deadletters import decode_deadletter
from services.analytics.metrics import AnalyticsCollector, read_snapshot
from services.analytics.postgres_repository import PostgresAnalytics
from services.analytics.queries import ReadConfig
from services.analytics.repository import AnalyticsRepository
from services.analytics.sessions import PostgresSessions, Sessions
from services.analytics.settings import AnalyticsSettings
from services.analytics.stream import Hub, listen
from shared import topics
from shared.apikeys import KeyChecker, PostgresKeyStore
from shared.events import PerformanceAlert, SystemHealthAlert, decode_outcome
from shared.http import ReadyCheck
from shared.kafka import ConsumerRunner, Publisher
from shared.service import Service


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


async def run_analytics(
    settings: AnalyticsSettings,
    stop: asyncio.Event,
    *,
    clock: Clock = utc_now,
    ready: asyncio.Event | None = None,
) -> None:
    """Count outcomes and serve the figures until ``stop`` is set."""
    async with Service("analytics", stop, ready=ready) as svc:
        pool = await svc.pool(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        repo: AnalyticsRepository = PostgresAnalytics(pool)
        await svc.topics(settings, (topics.OUTCOMES, topics.ALERTS, topics.DEADLETTER))
        publisher = await svc.publisher(settings, client_id="leadwire-analytics")
        config = handler_config(settings)

        async def publish(events: Sequence[PerformanceAlert]) -> None:
            await publisher.publish_many(topics.ALERTS, [(str(e.webhook_id), e) for e in events])

        # The last publish attempt of queued alerts, after the consumer's last batch.
        svc.cleanup(lambda: handlers.flush_alert_outbox(repo=repo, publish=publish))
        runner = ConsumerRunner(
            settings,
            topics=[topics.OUTCOMES],
            group_id=settings.analytics_group,
            decode=decode_outcome,
            handler=functools.partial(
                handlers.handle_outcomes, repo=repo, config=config, publish=publish, clock=clock
            ),
            publisher=publisher,
            max_batch=settings.analytics_max_batch,
            gather_ms=settings.analytics_gather_ms,
        )
        svc.task("consumer", runner.run(), on_stop=runner.stop)
        dead_runner = _deadletters(svc, settings, pool, publisher, clock)

        hub = Hub()
        svc.task(
            "listen",
            listen(settings.database_url, hub, svc.draining),
            on_stop=svc.draining.set,
            phase=100,  # with the upkeep, after the consumer
            critical=False,
        )
        _upkeep(svc, settings, repo=repo, config=config, publish=publish, clock=clock)
        app = create_app(
            Api(
                repo=repo,
                read=ReadConfig(
                    accuracy=settings.analytics_sketch_accuracy,
                    recent_errors=min(settings.analytics_recent_errors, 10),
                ),
                hub=hub,
                clock=clock,
                stream_min_interval_s=settings.analytics_stream_min_interval_s,
                stream_refresh_s=settings.analytics_stream_refresh_s,
                stream_recheck_s=settings.analytics_stream_recheck_s,
            ),
            _access(svc, settings, pool, clock),
        )
        checks: dict[str, ReadyCheck] = {
            "consumer": runner.readiness,
            "deadletters": dead_runner.readiness,
            "postgres": repo.ping,
        }
        await svc.serve_public(app, settings.http_host, settings.analytics_port)
        await svc.serve_ops(settings, checks=checks)
        svc.watch_health(settings, publisher, checks)
        svc.cleanup(hub.close)  # first of the clean-ups: streams end, then the server closes
        await svc.run()


def _access(svc: Service, settings: AnalyticsSettings, pool: asyncpg.Pool, clock: Clock) -> Access:
    """Who may read: API keys (shared.apikeys) and dashboard sessions; expired sessions
    are pruned with the upkeep."""
    checker = KeyChecker(PostgresKeyStore(pool))
    store = PostgresSessions(pool)
    svc.every("session_prune", 600, lambda: store.prune(clock()), first_delay_s=60)
    return Access(
        checker=checker,
        sessions=Sessions(
            store=store,
            checker=checker,
            clock=clock,
            lifetime=timedelta(hours=settings.analytics_session_hours),
            secure_cookie=settings.analytics_cookie_secure,
        ),
    )


def _deadletters(
    svc: Service,
    settings: AnalyticsSettings,
    pool: asyncpg.Pool,
    publisher: Publisher,
    clock: Clock,
) -> ConsumerRunner[bytes]:
    """The dead-letter consumer (counts per webhook), the growth alert and its pruning."""
    store = PostgresDeadLetters(pool)
    runner: ConsumerRunner[bytes] = ConsumerRunner(
        settings,
        topics=[topics.DEADLETTER],
        group_id=settings.analytics_deadletter_group,
        decode=decode_deadletter,
        handler=functools.partial(
            handlers.count_deadletters,
            store=store,
            dedupe_days=settings.analytics_dedupe_days,
            clock=clock,
        ),
        publisher=publisher,
        max_batch=settings.analytics_max_batch,
    )
    svc.task("deadletters", runner.run(), on_stop=runner.stop)

    async def publish(event: SystemHealthAlert) -> None:
        await publisher.publish(topics.ALERTS, event, key=event.service)

    svc.every(
        "deadletter_growth",
        settings.analytics_deadletter_check_s,
        lambda: handlers.check_deadletter_growth(
            store=store,
            publish=publish,
            window_minutes=settings.analytics_deadletter_window_minutes,
            min_count=settings.analytics_deadletter_alert_min,
            clock=clock,
        ),
    )
    if settings.analytics_prune_interval_s > 0:
        svc.every(
            "deadletter_prune",
            settings.analytics_prune_interval_s,
            lambda: store.prune(before=clock() - timedelta(days=settings.analytics_dedupe_days)),
        )
    return runner


def _upkeep(
    svc: Service,
    settings: AnalyticsSettings,
    *,
    repo: AnalyticsRepository,
    config: handlers.Config,
    publish: handlers.PublishAlerts,
    clock: Clock,
) -> None:
    """The periodic work: Prometheus snapshot, alert sweep, delivery sync, outbox retry,
    pruning."""
    collector = AnalyticsCollector()
    REGISTRY.register(collector)
    svc.cleanup(lambda: REGISTRY.unregister(collector))

    async def refresh_metrics() -> None:
        collector.snapshot = await read_snapshot(
            repo,
            max_webhooks=settings.analytics_metrics_max_webhooks,
            accuracy=settings.analytics_sketch_accuracy,
            since=clock() - timedelta(hours=24),
        )

    svc.every("metrics", settings.analytics_metrics_refresh_s, refresh_metrics)
    svc.every(
        "sweep",
        settings.analytics_alert_sweep_s,
        lambda: handlers.sweep_and_publish(repo=repo, config=config, publish=publish, clock=clock),
    )
    svc.every(
        "deliveries",
        settings.analytics_delivery_sync_s,
        handlers.DeliverySync(repo=repo, clock=clock).run,
    )
    svc.every(
        "outbox",
        settings.analytics_outbox_retry_s,
        lambda: handlers.flush_alert_outbox(repo=repo, publish=publish),
    )
    if settings.analytics_prune_interval_s > 0:
        svc.every(
            "prune",
            settings.analytics_prune_interval_s,
            lambda: handlers.prune(
                repo=repo,
                clock=clock,
                dedupe_days=settings.analytics_dedupe_days,
                minute_retention_days=settings.analytics_minute_retention_days,
                errors_per_webhook=settings.analytics_recent_errors,
            ),
        )
