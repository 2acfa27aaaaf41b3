"""Assembling an archiver on the shared skeleton (:mod:`shared.service`): Kafka publisher
(dead letters), the archive bucket, the index's Postgres pool, the consumer runner on the
outcome topic with the segment writer as its holding handler, the periodic store of
segments that waited long enough, the ops listener (its only HTTP:
``LEADWIRE_ARCHIVER_OPS_PORT``, 9084) and retention upkeep. ``__main__`` calls
:func:`run_archiver`; tests call it in-process.

Start-up waits for Kafka, Postgres and the bucket (created if missing) instead of
crash-looping; the index table comes from the migrations (``leadwire db migrate``). Ready
while the consumer turns, the bucket answers and the index answers. Retention: a
lifecycle rule where the S3 server takes one, and a prune every
``archive_prune_interval_s`` (which also drops the index rows of expired segments).
SIGTERM: finish the batch in hand, store every segment held, commit, stop.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from services.archiver.handlers import Hooks, SegmentWriter, classify
from services.archiver.index import SESSION, ArchiveIndex, PgIndex
from services.archiver.repository import Archive, S3Archive
from services.archiver.retention import prune
from services.archiver.settings import ArchiverSettings
from shared import topics
from shared.events import Outcome, decode_outcome
from shared.health import age_check
from shared.http import ReadyCheck
from shared.kafka import ConsumerRunner
from shared.logs import get_logger
from shared.s3 import s3_client
from shared.service import Service

log = get_logger("services.archiver")

# What "S3 is not there yet" looks like at start-up.
_S3_UNAVAILABLE = (BotoCoreError, ClientError, OSError, TimeoutError)


async def run_archiver(
    settings: ArchiverSettings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    serve_http: bool = True,
    hooks: Hooks = Hooks(),
) -> None:
    """Archive outcome events until ``stop`` is set; then finish the batch in hand, store
    what is held, commit its offsets and return. ``hooks``: a test's fault injection (see
    :class:`~services.archiver.handlers.Hooks`); production passes none."""
    async with Service("archiver", stop, ready=ready) as svc:
        pool = await svc.pool(
            settings.database_url,
            min_size=1,
            max_size=max(settings.db_pool_max, 2),
            stateless=True,
            server_settings=SESSION,
        )
        index = PgIndex(pool)
        publisher = await svc.publisher(settings, client_id="leadwire-archiver")
        await svc.topics(settings, (topics.OUTCOMES, topics.DEADLETTER))
        archive = S3Archive(await svc.enter(s3_client(settings)), settings.s3_bucket)
        lifecycle = await svc.retry_until(
            "s3 bucket", lambda: _set_up_bucket(archive, settings), retry_on=_S3_UNAVAILABLE
        )
        writer = SegmentWriter(
            archive=archive,
            index=index,
            bounds=settings.segment_bounds(),
            level=settings.archive_gzip_level,
            concurrency=settings.archive_upload_concurrency,
            hooks=hooks,
        )
        runner: ConsumerRunner[Outcome] = ConsumerRunner(
            settings,
            topics=[topics.OUTCOMES],
            group_id=settings.archiver_group,
            decode=decode_outcome,
            handler=writer.handle,
            publisher=publisher,
            max_batch=settings.archive_max_batch,
            gather_ms=settings.archive_gather_ms,
            classify=classify,
            holding=writer,
        )
        checks: dict[str, ReadyCheck] = {
            "consumer": runner.readiness,
            "s3": archive.ping,
            "index": index.ping,
        }
        if serve_http:
            await svc.serve_ops(settings, checks=checks)
        # Alerts: not ready for too long, or the oldest outcome not archived yet too old.
        health = svc.watch_health(settings, publisher, checks)
        behind_s = settings.health_archive_behind_minutes * 60
        health.watch("archive_behind", age_check(runner.oldest_pending_age_s, behind_s), after_s=0)
        svc.task("consumer", runner.run(), on_stop=runner.stop)

        async def store_due() -> None:
            async with runner.exclusive():
                await writer.flush_due()

        bounds = settings.segment_bounds()
        svc.every("segments", max(0.05, min(bounds.idle_s, bounds.age_s) / 4), store_due)
        if settings.archive_prune_interval_s > 0:
            svc.every(
                "prune",
                settings.archive_prune_interval_s,
                lambda: _prune(archive, index, settings),
                first_delay_s=0 if not lifecycle else settings.archive_prune_interval_s,
            )
        log.info("archiver_started", bucket=settings.s3_bucket, group=settings.archiver_group)
        await svc.run()
    log.info("archiver_stopped")


async def _set_up_bucket(archive: Archive, settings: ArchiverSettings) -> bool:
    """Create the bucket if missing and ask for a lifecycle rule; True if the server took it."""
    await archive.ensure_bucket()
    days = settings.archive_retention_days
    if await archive.apply_lifecycle(days):
        log.info("archive_lifecycle_rule_set", days=days)
        return True
    log.info(
        "archive_lifecycle_unsupported_pruning",
        days=days,
        interval_s=settings.archive_prune_interval_s,
    )
    return False


async def _prune(archive: Archive, index: ArchiveIndex, settings: ArchiverSettings) -> None:
    result = await prune(
        archive, index, older_than_days=settings.archive_retention_days, now=datetime.now(UTC)
    )
    if result.segments or result.legacy_records:
        log.info(
            "archive_pruned",
            segments=result.segments,
            records=result.records,
            legacy_records=result.legacy_records,
        )
