"""Assembling the notifier on the shared skeleton (:mod:`shared.service`):

- consumer: outcome and alert events -> send rows (:func:`handlers.handle_events`),
  offsets committed after the rows are committed;
- dispatcher: send rows -> email / SMS batches (:mod:`dispatcher`);
- realtime: Socket.IO server + LISTEN fan-out (:mod:`realtime`), on the public port
  (``LEADWIRE_NOTIFIER_PORT``, 8082); /healthz, /readyz and /metrics on the ops listener
  (``LEADWIRE_NOTIFIER_OPS_PORT``, 9082); live sessions re-checked every
  ``notify_realtime_recheck_s`` (a rotated token or a disabled workspace drops them);
- upkeep: the queue-depth gauge and pruning of finished sends.

On stop (SIGTERM), phase by phase: the consumer finishes and commits its batch and the
dispatcher lets its in-flight sends finish and records them (phase 0); then the LISTEN
fan-out stops (phase 1), so the pushes of that last batch still go out; then everything
closes. ``__main__`` calls :func:`run_notifier`; tests call it in-process.
"""

from __future__ import annotations

import asyncio
import functools

import aiohttp
from aiohttp import web

from services.notifier.dispatcher import Dispatcher, prune, report_queue_depth
from services.notifier.handlers import decode_notifiable, handle_events
from services.notifier.realtime import RealtimeHub
from services.notifier.repository import PgRepository
from services.notifier.rules import Notifiable
from services.notifier.senders import EmailSender, Sender, SmsSender
from services.notifier.settings import NotifierSettings
from shared import topics
from shared.http import ReadyCheck
from shared.kafka import ConsumerRunner
from shared.service import Service

CONSUMED_TOPICS = (topics.OUTCOMES, topics.ALERTS)


async def run_notifier(
    settings: NotifierSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> None:
    """Run the notifier until ``stop`` is set. ``ready`` is set once it consumes."""
    async with Service("notifier", stop, ready=ready) as svc:
        pool = await svc.pool(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        repo = PgRepository(pool)
        http = await svc.enter(aiohttp.ClientSession())
        publisher = await svc.publisher(settings, client_id="leadwire-notifier")
        await svc.topics(settings, (*CONSUMED_TOPICS, topics.NOTIFY_DEADLETTER, topics.DEADLETTER))
        senders: dict[str, Sender] = {
            "email": EmailSender(settings),
            "sms": SmsSender(settings, http),
        }
        dispatcher = Dispatcher(repo=repo, senders=senders, publisher=publisher, settings=settings)
        retention_s = settings.notify_retention_days * 86400
        consumer: ConsumerRunner[Notifiable] = ConsumerRunner(
            settings,
            topics=CONSUMED_TOPICS,
            group_id=settings.notify_group_id,
            decode=decode_notifiable,
            handler=functools.partial(
                handle_events, repo=repo, on_recorded=dispatcher.wake, max_age_s=retention_s
            ),
            publisher=publisher,
            max_batch=200,
            gather_ms=settings.notify_gather_ms,
        )
        hub = RealtimeHub(
            repo=repo, dsn=settings.database_url, cors_origins=settings.notify_cors_origins
        )
        app = web.Application()
        hub.attach(app)

        async def kafka_ok() -> bool:
            return await publisher.probe(2.0)

        checks: dict[str, ReadyCheck] = {
            "postgres": repo.ping,
            "kafka": kafka_ok,
            "consumer": consumer.readiness,
            "dispatcher": dispatcher.healthy,
            "realtime": lambda: hub.listening,
        }
        await svc.serve_public(app, settings.http_host, settings.notifier_port)
        await svc.serve_ops(settings, checks=checks)
        svc.watch_health(settings, publisher, checks)
        # Pushes of the consumer's last batch still go out: the fan-out stops after it.
        listen_stop = asyncio.Event()
        svc.task("realtime", hub.listen(listen_stop), on_stop=listen_stop.set, phase=1)
        svc.task("dispatcher", dispatcher.run(), on_stop=dispatcher.stop)
        svc.task("consumer", consumer.run(), on_stop=consumer.stop)
        svc.every("queue_depth", 1.0, lambda: report_queue_depth(repo))
        svc.every("realtime_sessions", settings.notify_realtime_recheck_s, hub.check_sessions)
        svc.every("prune", 3600, lambda: prune(repo, retention_s=retention_s), first_delay_s=60)
        await svc.run()
