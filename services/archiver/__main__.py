"""Archiver entry point: ``python -m services.archiver`` (wiring only).

settings -> logging -> Kafka publisher (dead letters) + S3 client -> consumer runner on
the outcome topic + ops HTTP (/healthz, /readyz, /metrics on ``archiver_port``).
Ready while the consumer turns and the bucket answers. SIGTERM: finish and commit the
batch in hand, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from aiohttp import web

from services.archiver.handlers import BatchArchiver
from services.archiver.records import Outcome
from services.archiver.retention import prune
from services.archiver.settings import ArchiverSettings
from services.archiver.store import ArchiveStore
from shared import runtime, topics
from shared.events import decode_outcome
from shared.http import add_ops_routes, serve
from shared.kafka import ConsumerRunner, KafkaUnavailable, Publisher, ensure_topics
from shared.logs import configure_logging, get_logger
from shared.s3 import s3_client

log = get_logger("services.archiver")


async def run_archiver(
    settings: ArchiverSettings, stop: asyncio.Event, *, http: bool = True
) -> None:
    """Archive outcome events until ``stop`` is set (then drain, commit and return)."""
    publisher = Publisher(settings, client_id="leadwire-archiver")
    await _start_publisher(publisher, settings, stop)
    if stop.is_set():
        await publisher.stop()
        return
    try:
        async with s3_client(settings) as s3:
            store = ArchiveStore(s3, settings.s3_bucket)
            archiver = BatchArchiver(store=store, concurrency=settings.archive_upload_concurrency)
            runner: ConsumerRunner[Outcome] = ConsumerRunner(
                settings,
                topics=[topics.OUTCOMES],
                group_id=settings.archiver_group,
                decode=decode_outcome,
                handler=archiver.handle,
                publisher=publisher,
                max_batch=settings.archive_max_batch,
            )
            web_runner: web.AppRunner | None = None
            if http:
                app = web.Application()
                add_ops_routes(
                    app, service="archiver", checks={"consumer": runner.healthy, "s3": store.ping}
                )
                web_runner = await serve(app, settings.http_host, settings.archiver_port)
            housekeeping = asyncio.create_task(_housekeeping(store, settings, stop))
            consuming = asyncio.create_task(runner.run())
            stopping = asyncio.create_task(stop.wait())
            log.info("archiver_started", bucket=settings.s3_bucket, group=settings.archiver_group)
            try:
                await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                runner.stop()
                stopping.cancel()
                housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await housekeeping
                try:
                    await consuming  # finishes and commits the batch in hand
                finally:
                    if web_runner is not None:
                        await web_runner.cleanup()
            log.info("archiver_stopped")
    finally:
        await publisher.stop()


async def _start_publisher(
    publisher: Publisher, settings: ArchiverSettings, stop: asyncio.Event
) -> None:
    backoff = 0.2
    while not stop.is_set():
        try:
            await publisher.start()
            await ensure_topics(settings, [topics.OUTCOMES, topics.DEADLETTER])
            return
        except (KafkaUnavailable, TimeoutError, OSError) as exc:
            log.warning("kafka_unavailable_retrying", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)


async def _housekeeping(
    store: ArchiveStore, settings: ArchiverSettings, stop: asyncio.Event
) -> None:
    """Make sure the bucket exists and set retention: a lifecycle rule if the server takes
    one, else prune expired days every ``archive_prune_interval_s``."""
    backoff = 0.5
    while True:
        try:
            await store.ensure_bucket()
            lifecycle = await store.apply_lifecycle(settings.archive_retention_days)
            break
        except Exception as exc:  # S3 away at startup: keep trying, archiving waits anyway
            log.warning("archive_bucket_setup_retry", error=type(exc).__name__)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
    if lifecycle:
        log.info("archive_lifecycle_rule_set", days=settings.archive_retention_days)
        return
    log.info(
        "archive_lifecycle_unsupported_pruning",
        days=settings.archive_retention_days,
        interval_s=settings.archive_prune_interval_s,
    )
    if settings.archive_prune_interval_s <= 0:
        return
    while not stop.is_set():
        try:
            result = await prune(
                store, older_than_days=settings.archive_retention_days, now=datetime.now(UTC)
            )
            if result.records:
                log.info("archive_pruned", records=result.records, days=len(result.days))
        except Exception as exc:
            log.warning("archive_prune_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.archive_prune_interval_s)


def main() -> None:
    settings = ArchiverSettings()
    configure_logging("archiver", level=settings.log_level, fmt=settings.log_format)
    runtime.run(lambda stop: run_archiver(settings, stop))


if __name__ == "__main__":
    main()
