"""Assembling a processor: pool, publisher, consumer runner and the ops listener (its only
HTTP: ``LEADWIRE_PROCESSOR_OPS_PORT``, 9081), on the shared skeleton (:mod:`shared.service`). ``__main__`` calls :func:`run_processor`; tests call it
in-process."""

from __future__ import annotations

import asyncio

from services.processor import sql
from services.processor.decode import Incoming, decode_message
from services.processor.handlers import Hooks, Pipeline
from services.processor.outcomes import OutcomePublisher
from services.processor.repository import PostgresRepository
from services.processor.settings import ProcessorSettings
from shared import topics
from shared.http import ReadyCheck
from shared.kafka import ConsumerRunner
from shared.service import Service


async def run_processor(
    settings: ProcessorSettings,
    stop: asyncio.Event,
    *,
    serve_http: bool = True,
    hooks: Hooks = Hooks(),
    ready: asyncio.Event | None = None,
) -> None:
    """Process the raw topic until ``stop`` is set; then finish the batch in hand, publish
    its outcomes, commit its offsets and return. ``hooks``: a test's fault injection
    (see :class:`~services.processor.handlers.Hooks`); production passes none."""
    async with Service("processor", stop, ready=ready) as svc:
        pool = await svc.pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=max(settings.db_pool_max, 2),
            # Transactions only: no session state to reset between batches.
            stateless=True,
            server_settings=sql.SESSION,
        )
        publisher = await svc.publisher(settings, client_id="leadwire-processor")
        await svc.topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER))
        repo = PostgresRepository(pool)
        # A batch's outcomes are published while the next batch's transactions run; their
        # offsets are held back until Kafka acknowledged them (services/processor/handlers.py).
        pipeline = Pipeline(
            repo=repo,
            publish=OutcomePublisher(publisher).publish,
            settings=settings,
            hooks=hooks,
        )
        runner: ConsumerRunner[Incoming] = ConsumerRunner(
            settings,
            topics=[topics.RAW],
            group_id=settings.processor_group,
            decode=decode_message,
            handler=pipeline,
            holding=pipeline,
            publisher=publisher,
            max_batch=settings.processor_batch_max,
            # Idle polling only: every fetch covers every partition (shared/kafka/consumer.py).
            fetch_max_wait_ms=settings.processor_fetch_max_wait_ms,
        )

        checks: dict[str, ReadyCheck] = {"consumer": runner.readiness, "database": repo.ping}
        if serve_http:
            await svc.serve_ops(settings, checks=checks)
        svc.watch_health(settings, publisher, checks)
        svc.task("consumer", runner.run(), on_stop=runner.stop)
        await svc.run()
