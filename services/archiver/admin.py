"""The archive's admin operations: the one module the CLI imports to drive the archive
(``leadwire archive show|list|search|prune|compact|export`` and ``leadwire replay``).

Each operation opens what it needs itself (the bucket from the S3 settings, the index
from ``database_url``) and reports a problem the user can act on as :class:`AdminError`
(a message and a hint), never as a botocore, asyncpg or Kafka exception. Results are
JSON-ready dicts.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from services.archiver import records, replay
from services.archiver.compact import compact
from services.archiver.index import PgIndex, Query, decode_cursor, encode_cursor
from services.archiver.replay import WebhookConfig
from services.archiver.repository import Archive, ReadRefused, S3Archive, S3Reader, error_code
from services.archiver.retention import prune
from services.archiver.search import MATCH_TYPES, STATUSES, find_archived, read_record
from shared.db import connect
from shared.errors import AdminError
from shared.kafka import KafkaUnavailable, Publisher
from shared.s3 import s3_client
from shared.settings import CommonSettings

__all__ = [
    "MATCH_TYPES",
    "STATUSES",
    "AdminError",
    "Query",
    "ReplayProgress",
    "WebhookConfig",
    "compact_archive",
    "export_segments",
    "parse_time",
    "prune_archive",
    "replay_requests",
    "search_requests",
    "show_record",
]

parse_time = records.parse_time


@contextlib.asynccontextmanager
async def _bucket(settings: CommonSettings) -> AsyncIterator[Archive]:
    """The archive bucket; S3 failures become :class:`AdminError`."""
    try:
        async with s3_client(settings) as s3:
            try:
                yield S3Archive(s3, settings.s3_bucket)
            except ClientError as exc:
                code = error_code(exc)
                if code in ("NoSuchBucket", "404"):
                    raise AdminError(
                        f"the archive bucket {settings.s3_bucket!r} does not exist",
                        hint="start the archiver once (it creates it), or set LEADWIRE_S3_BUCKET",
                    ) from exc
                raise AdminError(f"S3 refused the request: {code or exc}") from exc
    except (BotoCoreError, OSError) as exc:
        raise AdminError(
            f"cannot reach S3 at {settings.s3_endpoint} ({type(exc).__name__})",
            hint="start the stack with `make up`, or set LEADWIRE_S3_ENDPOINT",
        ) from exc


@contextlib.asynccontextmanager
async def _index(settings: CommonSettings) -> AsyncIterator[PgIndex]:
    """The archive index on one Postgres connection; failures become :class:`AdminError`."""
    try:
        conn = await connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise AdminError(
            f"cannot connect to Postgres ({type(exc).__name__})",
            hint="start the stack with `make up`, or set LEADWIRE_DATABASE_URL",
        ) from exc
    try:
        yield PgIndex(conn)
    except asyncpg.UndefinedTableError as exc:
        raise AdminError(
            "the database has no archive index", hint="run `leadwire db migrate`"
        ) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise AdminError(f"Postgres failed: {type(exc).__name__}: {exc}") from exc
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _open(settings: CommonSettings) -> AsyncIterator[tuple[Archive, PgIndex]]:
    async with _index(settings) as index, _bucket(settings) as archive:
        yield archive, index


# --- show, list/search ----------------------------------------------------------------


async def show_record(settings: CommonSettings, request_id: uuid.UUID) -> dict[str, Any]:
    """The archived log record of one request: index -> one ranged GET of the segment
    member -> its line (or, for the first layout, the request's pointer, then its object).
    Reads with signed GETs (:class:`S3Reader`): no S3 client to build."""
    async with _index(settings) as index:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                record = await read_record(S3Reader(http, settings), index, request_id)
        except ReadRefused as exc:
            if exc.code == "NoSuchBucket":
                raise AdminError(
                    f"the archive bucket {settings.s3_bucket!r} does not exist",
                    hint="start the archiver once (it creates it), or set LEADWIRE_S3_BUCKET",
                ) from exc
            raise AdminError(f"S3 refused the request: {exc.code}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(
                f"cannot reach S3 at {settings.s3_endpoint} ({type(exc).__name__})",
                hint="start the stack with `make up`, or set LEADWIRE_S3_ENDPOINT",
            ) from exc
    if record is None:
        raise AdminError(
            f"request {request_id} is not in the archive",
            hint="it may still be in flight, older than the retention, or never accepted",
        )
    return record


async def search_requests(
    settings: CommonSettings, query: Query, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page (``limit`` rows after ``cursor``) of the archived requests matching
    ``query``, oldest first, from the index alone; ``next_cursor`` when there is more."""
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise AdminError(f"--cursor: {exc}") from exc
    async with _index(settings) as index:
        rows = await index.search(query, limit=limit + 1, after=after)
    page = rows[:limit]
    return {
        "count": len(page),
        "requests": [row.summary() for row in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > limit else None,
    }


# --- prune, compact, export ---------------------------------------------------------------


async def prune_archive(
    settings: CommonSettings, *, older_than_days: int, dry_run: bool
) -> dict[str, object]:
    """Delete (or with ``dry_run`` count) archives of days that ended N days ago."""
    async with _open(settings) as (archive, index):
        result = await prune(
            archive,
            index,
            older_than_days=older_than_days,
            now=datetime.now(UTC),
            dry_run=dry_run,
        )
    return result.as_dict()


async def compact_archive(
    settings: CommonSettings,
    *,
    since: datetime | None,
    dry_run: bool,
    on_day: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Rewrite first-layout objects into segments (see :mod:`services.archiver.compact`)."""
    async with _open(settings) as (archive, index):
        result = await compact(archive, index, since=since, dry_run=dry_run, on_day=on_day)
    return result.as_dict()


async def export_segments(
    settings: CommonSettings,
    *,
    since: datetime,
    until: datetime,
    workspace_id: uuid.UUID | None,
    to: Path,
    on_file: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Copy the segments holding requests received in [since, until) (of one workspace,
    if given) into the folder ``to``, named as in the bucket (``<workspace>/<yyyy>/...``),
    for DuckDB, ``zcat`` or ``jq``. The index says which; the files are the objects as
    stored."""
    started = time.perf_counter()
    files: list[str] = []
    total = 0
    async with _open(settings) as (archive, index):
        for key in await index.segments_between(since, until, workspace_id):
            data = await archive.get_bytes(key)
            if data is None:
                continue  # pruned since the look-up
            path = to / key.removeprefix("archive/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files.append(str(path))
            total += len(data)
            if on_file:
                on_file(str(path))
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "workspace_id": str(workspace_id) if workspace_id else None,
        "to": str(to),
        "files": files,
        "bytes": total,
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayProgress:
    """Callbacks a caller may pass to follow a replay (e.g. to draw a progress bar)."""

    listed: Callable[[int], None] = lambda n: None  # archived requests found in the window
    loaded: Callable[[int], None] = lambda n: None  # this many more of them read
    publishing: Callable[[int], None] = lambda total: None  # about to publish this many
    published: Callable[[int], None] = lambda n: None  # this many more acknowledged


async def replay_requests(
    settings: CommonSettings,
    webhook: WebhookConfig,
    *,
    since: datetime,
    until: datetime,
    status: str | None,
    dry_run: bool,
    progress: ReplayProgress | None = None,
) -> dict[str, Any]:
    """Re-submit a webhook's archived requests of [since, until) through the current
    pipeline with its current mapping (see :mod:`services.archiver.replay`); with
    ``dry_run`` only report what each would become."""
    progress = progress or ReplayProgress()
    if "disabled" in (webhook.status, webhook.workspace_status) and not dry_run:
        what = "webhook" if webhook.status == "disabled" else "workspace"
        raise AdminError(
            f"the {what} is disabled: the pipeline would refuse the replayed requests",
            hint=f"enable the {what} first (or look with --dry-run)",
        )
    try:
        mapper = replay.compile_mapper(webhook)
    except ValueError as exc:  # shared.mapping.MappingError
        raise AdminError(
            f"the webhook's current mapping is invalid: {exc}",
            hint="fix it with `leadwire mappings ...` first",
        ) from exc
    fingerprint = replay.mapping_fingerprint(webhook.mapping, webhook.default_region)
    async with _open(settings) as (archive, index):
        found = await find_archived(
            archive,
            index,
            workspace_id=webhook.workspace_id,
            webhook_id=webhook.id,
            since=since,
            until=until,
            status=status,
            on_listed=progress.listed,
            on_loaded=progress.loaded,
        )
    planned = replay.plan(found, webhook=webhook, mapper=mapper, fingerprint=fingerprint)
    if not dry_run:
        to_publish = [p for p in planned if p.kind != "skipped"]
        progress.publishing(len(to_publish))
        await _publish(settings, to_publish, progress.published)
    summary = replay.Summary()
    summary.count(planned)
    return {
        "dry_run": dry_run,
        "webhook_id": str(webhook.id),
        "workspace_id": str(webhook.workspace_id),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "status": status,
        "mapping_fingerprint": fingerprint,
        "summary": summary.as_dict(),
        "requests": [p.describe() for p in planned],
    }


async def _publish(
    settings: CommonSettings, items: list[replay.Planned], on_published: Callable[[int], None]
) -> None:
    publisher = Publisher(settings, client_id="leadwire-replay")
    try:
        await publisher.start()
        await replay.publish(items, publisher=publisher, on_published=on_published)
    except KafkaUnavailable as exc:
        raise AdminError(
            f"Kafka did not acknowledge the replay: {exc}",
            hint="nothing is lost: run the same replay again once Kafka is up "
            "(replayed requests keep their ids, so none is created twice)",
        ) from exc
    finally:
        await publisher.stop()
