"""The archive's admin operations: the one module the CLI imports to drive the archive
(``leadwire archive show|list|prune`` and ``leadwire replay``).

Each operation opens the bucket itself (S3 settings from ``settings``) and reports a
problem the user can act on as :class:`AdminError` (a message and a hint), never as a
botocore or Kafka exception. Results are JSON-ready dicts.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from services.archiver import records, replay
from services.archiver.replay import WebhookConfig
from services.archiver.repository import Archive, S3Archive, error_code
from services.archiver.retention import prune
from services.archiver.search import STATUSES, find_archived
from shared.kafka import KafkaUnavailable, Publisher
from shared.s3 import s3_client
from shared.settings import CommonSettings

__all__ = [
    "STATUSES",
    "AdminError",
    "ReplayProgress",
    "WebhookConfig",
    "list_requests",
    "parse_time",
    "prune_archive",
    "replay_requests",
    "show_record",
]

parse_time = records.parse_time


class AdminError(Exception):
    """A failed admin operation: what went wrong and what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@contextlib.asynccontextmanager
async def _open(settings: CommonSettings) -> AsyncIterator[Archive]:
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


# --- show, list, prune ----------------------------------------------------------------


async def show_record(settings: CommonSettings, request_id: uuid.UUID) -> dict[str, Any]:
    """The archived log record of one request (found through its pointer object)."""
    async with _open(settings) as archive:
        pointer = await archive.get_json(records.pointer_key(request_id))
        key = pointer.get("key") if isinstance(pointer, dict) else None
        record = await archive.get_json(key) if isinstance(key, str) else None
    if not isinstance(record, dict):
        raise AdminError(
            f"request {request_id} is not in the archive",
            hint="it may still be in flight, older than the retention, or never accepted",
        )
    return record


async def list_requests(
    settings: CommonSettings,
    *,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    since: datetime,
    until: datetime,
    status: str | None,
) -> list[dict[str, Any]]:
    """A webhook's archived requests received in [since, until), oldest first."""
    async with _open(settings) as archive:
        found = await find_archived(
            archive,
            workspace_id=workspace_id,
            webhook_id=webhook_id,
            since=since,
            until=until,
            status=status,
        )
    return [e.summary() for e in found]


async def prune_archive(
    settings: CommonSettings, *, older_than_days: int, dry_run: bool
) -> dict[str, object]:
    """Delete (or with ``dry_run`` count) archives of days that ended N days ago."""
    async with _open(settings) as archive:
        result = await prune(
            archive, older_than_days=older_than_days, now=datetime.now(UTC), dry_run=dry_run
        )
    return result.as_dict()


# --- replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayProgress:
    """Callbacks a caller may pass to follow a replay (e.g. to draw a progress bar)."""

    listed: Callable[[int], None] = lambda n: None  # archived requests found in the window
    loaded: Callable[[], None] = lambda: None  # one of them read
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
    async with _open(settings) as archive:
        found = await find_archived(
            archive,
            workspace_id=webhook.workspace_id,
            webhook_id=webhook.id,
            since=since,
            until=until,
            status=status,
            with_records=True,
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
