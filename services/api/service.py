"""Assembling the management API on the shared skeleton (:mod:`shared.service`): the
Postgres pool, the API-key checker, the routes on the public port (``LEADWIRE_API_PORT``,
8085) and the ops routes on the ops listener (``LEADWIRE_API_OPS_PORT``, 9085).
``__main__`` calls :func:`run_api`; tests call it in-process.

It consumes nothing and publishes nothing of its own (a replay publishes through the
archiver's admin, which opens its own producer), so its one dependency at start is
Postgres, waited for rather than crash-looped on. Ready while Postgres answers. SIGTERM:
stop accepting, finish the requests in hand, close the pool.
"""

from __future__ import annotations

import asyncio

from services.api.admin import PostgresRepository
from services.api.app import Api, create_app
from services.api.handlers import Context
from services.api.settings import ApiSettings
from shared.apikeys import KeyChecker, PostgresKeyStore
from shared.logs import get_logger
from shared.service import Service

log = get_logger("services.api")


async def run_api(
    settings: ApiSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> None:
    """Serve the management API until ``stop`` is set."""
    async with Service("api", stop, ready=ready) as svc:
        pool = await svc.pool(
            settings.database_url, min_size=1, max_size=max(settings.db_pool_max, 2)
        )
        checker = KeyChecker(
            PostgresKeyStore(pool), touch_every_s=settings.api_key_touch_interval_s
        )
        app = create_app(
            Api(repo=PostgresRepository(pool), ctx=Context(settings=settings, pool=pool)),
            checker,
            max_body_bytes=settings.api_max_body_bytes,
        )

        async def database() -> bool:
            return await pool.fetchval("SELECT 1") == 1

        await svc.serve_public(app, settings.http_host, settings.api_port)
        await svc.serve_ops(settings, checks={"database": database})
        log.info("api_started", port=settings.api_port)
        await svc.run()
    log.info("api_stopped")
