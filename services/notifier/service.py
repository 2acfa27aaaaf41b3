"""Assembling the notifier: its resources, its three loops, and a clean shutdown.

- consumer: outcome and alert events -> send rows (see :mod:`handlers`), offsets committed
  after the rows are committed;
- dispatcher: send rows -> email / SMS batches (see :mod:`dispatcher`);
- realtime: Socket.IO server + LISTEN fan-out (see :mod:`realtime`), on the service's
  HTTP port next to /healthz, /readyz and /metrics.

On stop (SIGTERM): the consumer finishes and commits its batch, the dispatcher lets its
in-flight sends finish and records them, then everything closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from services.notifier.dispatcher import Dispatcher
from services.notifier.handlers import decode_notifiable, handle_events
from services.notifier.realtime import RealtimeHub
from services.notifier.repository import Repository
from services.notifier.senders import EmailSender, Sender, SmsSender
from services.notifier.settings import NotifierSettings
from shared import topics
from shared.db import create_pool, wait_for_database
from shared.http import add_ops_routes, serve
from shared.kafka import ConsumerRunner, Publisher, ensure_topics
from shared.logs import get_logger

log = get_logger(__name__)

CONSUMED_TOPICS = (topics.OUTCOMES, topics.ALERTS)


async def _until_ready(what: str, attempt: Any, stop: asyncio.Event) -> bool:
    """Retry ``attempt()`` with backoff until it succeeds (True) or stop is set (False)."""
    backoff = 0.2
    while not stop.is_set():
        try:
            await attempt()
            return True
        except Exception as exc:  # Kafka or the broker's admin API not there yet
            log.warning("startup_retry", what=what, error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, 5.0)
    return False


async def run_notifier(
    settings: NotifierSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> None:
    """Run the notifier until ``stop`` is set. ``ready`` is set once it consumes."""
    await wait_for_database(settings.database_url, deadline_s=120)
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    publisher = Publisher(settings, client_id="leadwire-notifier")
    http = aiohttp.ClientSession()
    web_runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        repo = Repository(pool)
        hub = RealtimeHub(
            repo=repo, dsn=settings.database_url, cors_origins=settings.notify_cors_origins
        )
        senders: dict[str, Sender] = {
            "email": EmailSender(settings),
            "sms": SmsSender(settings, http),
        }
        dispatcher = Dispatcher(repo=repo, senders=senders, publisher=publisher, settings=settings)
        consumer: ConsumerRunner[Any] = ConsumerRunner(
            settings,
            topics=CONSUMED_TOPICS,
            group_id=settings.notify_group_id,
            decode=decode_notifiable,
            handler=functools.partial(
                handle_events,
                repo=repo,
                on_recorded=dispatcher.wake,
                max_age_s=settings.notify_retention_days * 86400,
            ),
            publisher=publisher,
            max_batch=200,
        )

        async def kafka_ok() -> bool:
            return await publisher.probe(2.0)

        app = web.Application()
        hub.attach(app)
        add_ops_routes(
            app,
            service="notifier",
            checks={
                "postgres": repo.ping,
                "kafka": kafka_ok,
                "consumer": consumer.healthy,
                "dispatcher": dispatcher.healthy,
                "realtime": lambda: hub.listening,
            },
        )
        web_runner = await serve(app, settings.http_host, settings.notifier_port)
        log.info("notifier_listening", port=settings.notifier_port)

        if not await _until_ready("kafka_producer", publisher.start, stop):
            return
        if not await _until_ready(
            "kafka_topics",
            lambda: ensure_topics(
                settings, (*CONSUMED_TOPICS, topics.NOTIFY_DEADLETTER, topics.DEADLETTER)
            ),
            stop,
        ):
            return

        listen_stop = asyncio.Event()

        def start(coro: Coroutine[Any, Any, None], name: str) -> None:
            tasks.append(asyncio.create_task(coro, name=name))

        start(hub.listen(listen_stop), "realtime")
        start(dispatcher.run(), "dispatcher")
        start(consumer.run(), "consumer")
        if ready is not None:
            asyncio.get_running_loop().call_soon(ready.set)

        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        crashed = [t for t in done if t is not stopper]
        for t in crashed:
            log.error(
                "notifier_task_ended",
                task=t.get_name(),
                error=type(t.exception()).__name__ if t.exception() else None,
            )
        # Shutdown order: stop taking events, finish sends, then stop pushes.
        consumer.stop()
        dispatcher.stop()
        await asyncio.gather(
            *(t for t in tasks if t.get_name() != "realtime"), return_exceptions=True
        )
        listen_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if crashed:
            exc = crashed[0].exception()
            raise RuntimeError(f"notifier task {crashed[0].get_name()} ended") from exc
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        if web_runner is not None:
            await web_runner.cleanup()
        await publisher.stop()
        await http.close()
        await pool.close()
        log.info("notifier_stopped")
