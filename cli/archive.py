"""``leadwire archive show|list|prune`` and ``leadwire replay``: the request archive in S3.

The archive holds one log record per finished request (see docs/archiver.md). These
commands read it directly from the bucket; ``replay`` re-submits archived requests
through the current pipeline (the raw topic) with the webhook's current mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.context import database, load_settings
from cli.output import CliError, emit, fail, table
from services.archiver import records, replay
from services.archiver.repository import AmbiguousWebhook, WebhookConfig, webhook_config
from services.archiver.retention import prune
from services.archiver.search import STATUSES, find_archived
from services.archiver.store import ArchiveStore, error_code
from shared.kafka import KafkaUnavailable, Publisher
from shared.s3 import s3_client
from shared.settings import CommonSettings

T = TypeVar("T")

archive_app = typer.Typer(
    name="archive",
    help="The request archive in S3: show one request, list a webhook's requests, prune old ones.",
    no_args_is_help=True,
)

JSON_OPT = typer.Option(False, "--json", help="Print one JSON document.")
WEBHOOK_OPT = typer.Option(
    ..., "--webhook", "-w", help="Webhook id, or name (unique or with --workspace)."
)
WORKSPACE_OPT = typer.Option(
    None, "--workspace", help="Workspace id or name (to disambiguate a webhook name)."
)
STATUS_OPT = typer.Option(
    None, "--status", help="Only requests with this status: processed, failed or rejected."
)


def register(app: typer.Typer) -> None:
    app.add_typer(archive_app, name="archive")
    app.command("replay")(replay_command)


# --- plumbing -------------------------------------------------------------------------


def _run(work: Callable[[CommonSettings], Coroutine[Any, Any, T]], *, as_json: bool) -> T:
    settings = load_settings()
    try:
        return asyncio.run(work(settings))
    except CliError as err:
        fail(err, as_json=as_json)


@contextlib.asynccontextmanager
async def _store(settings: CommonSettings) -> AsyncIterator[ArchiveStore]:
    try:
        async with s3_client(settings) as s3:
            store = ArchiveStore(s3, settings.s3_bucket)
            try:
                yield store
            except ClientError as exc:
                code = error_code(exc)
                if code in ("NoSuchBucket", "404"):
                    raise CliError(
                        f"the archive bucket {settings.s3_bucket!r} does not exist",
                        hint="start the archiver once (it creates it), or set LEADWIRE_S3_BUCKET",
                    ) from exc
                raise CliError(f"S3 refused the request: {code or exc}") from exc
    except (BotoCoreError, OSError) as exc:
        raise CliError(
            f"cannot reach S3 at {settings.s3_endpoint} ({type(exc).__name__})",
            hint="start the stack with `make up`, or set LEADWIRE_S3_ENDPOINT",
        ) from exc


async def _webhook(conn: asyncpg.Connection, webhook: str, workspace: str | None) -> WebhookConfig:
    try:
        found = await webhook_config(conn, webhook, workspace=workspace)
    except AmbiguousWebhook as exc:
        raise CliError(
            f"webhook name {webhook!r} is used in several workspaces ({', '.join(exc.workspaces)})",
            hint="pass the webhook id, or --workspace NAME",
        ) from exc
    if found is None:
        raise CliError(
            f"no webhook {webhook!r}" + (f" in workspace {workspace!r}" if workspace else ""),
            hint="list webhooks with `leadwire webhooks list`",
        )
    return found


def _time(value: str, option: str) -> datetime:
    try:
        return records.parse_time(value)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from exc


def _window(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = _time(since, "--since"), _time(until, "--until")
    if start >= end:
        raise CliError("--since must be before --until")
    return start, end


def _status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise CliError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    return status


def _uuid(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _progress(*, enabled: bool) -> Progress:
    """A progress bar on stderr (never on stdout), only on a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


# --- archive show ---------------------------------------------------------------------


@archive_app.command("show")
def show_command(
    request_id: str = typer.Argument(..., help="The request id (log_id) to show."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show the archived log record of one request."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        rid = _uuid(request_id)
        if rid is None:
            raise CliError(f"{request_id!r} is not a request id (a UUID)")
        async with _store(settings) as store:
            key = await store.find(rid)
            record = await store.get_json(key) if key else None
        if not isinstance(record, dict):
            raise CliError(
                f"request {rid} is not in the archive",
                hint="it may still be in flight, older than the retention, or never accepted",
            )
        return record

    record = _run(work, as_json=as_json)
    emit(record, as_json=as_json, text=_describe_record)


def _describe_record(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    lines = [
        f"request   {record.get('request_id')}",
        f"webhook   {record.get('webhook_id')}  (workspace {record.get('workspace_id')})",
        f"received  {record.get('timestamp')}",
        f"status    {record.get('status')}",
    ]
    if record.get("replay_of"):
        lines.append(f"replay of {record['replay_of']}")
    if result.get("contact_id"):
        lines.append(
            f"contact   {result['contact_id']} ({result.get('action')}, match {result.get('match_type')})"
        )
    if record.get("error"):
        error = record["error"]
        lines.append(f"error     {error.get('type')}: {error.get('message')}")
    lines.append("")
    lines.append(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
    return "\n".join(lines)


# --- archive list ---------------------------------------------------------------------


@archive_app.command("list")
def list_command(
    webhook: str = WEBHOOK_OPT,
    since: str = typer.Option(
        "24h", "--since", help="Start: ISO date/time (UTC if naive) or an age like 24h, 7d."
    ),
    until: str = typer.Option(
        "now", "--until", help="End (exclusive): ISO date/time, 'now', or an age."
    ),
    status: str | None = STATUS_OPT,
    workspace: str | None = WORKSPACE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """List a webhook's archived requests received in a time window."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        start, end = _window(since, until)
        wanted = _status(status)
        ws_id, wh_id = _uuid(workspace), _uuid(webhook)
        if ws_id is None or wh_id is None:
            # Names (or a webhook id alone): the workspace comes from Postgres. Both ids
            # given work without Postgres (e.g. for a deleted webhook).
            async with database(settings) as conn:
                config = await _webhook(conn, webhook, workspace)
            ws_id, wh_id = config.workspace_id, config.id
        async with _store(settings) as store:
            found = await find_archived(
                store, workspace_id=ws_id, webhook_id=wh_id, since=start, until=end, status=wanted
            )
        return {
            "webhook_id": str(wh_id),
            "workspace_id": str(ws_id),
            "since": start.isoformat(),
            "until": end.isoformat(),
            "status": wanted,
            "count": len(found),
            "requests": [e.summary() for e in found],
        }

    doc = _run(work, as_json=as_json)
    emit(
        doc,
        as_json=as_json,
        text=lambda d: (
            table(d["requests"], ["request_id", "received_at", "status", "replay_of"])
            + f"\n{d['count']} request(s)"
        ),
    )


# --- archive prune --------------------------------------------------------------------


@archive_app.command("prune")
def prune_command(
    older_than: int = typer.Option(
        90,
        "--older-than",
        min=1,
        envvar="LEADWIRE_ARCHIVE_RETENTION_DAYS",
        help="Delete archives of requests received on days that ended at least this many days ago.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would be deleted; delete nothing."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Delete archived requests older than the retention (by the day they were received)."""

    async def work(settings: CommonSettings) -> dict[str, object]:
        async with _store(settings) as store:
            result = await prune(
                store, older_than_days=older_than, now=datetime.now(UTC), dry_run=dry_run
            )
        return result.as_dict()

    doc = _run(work, as_json=as_json)
    verb = "would delete" if dry_run else "deleted"
    emit(
        doc,
        as_json=as_json,
        text=lambda d: f"{verb} {d['records']} record(s) from {len(d['days'])} day folder(s)",
    )


# --- replay ---------------------------------------------------------------------------


def replay_command(
    webhook: str = WEBHOOK_OPT,
    since: str = typer.Option(
        ..., "--since", help="Start: ISO date/time (UTC if naive) or an age like 24h, 7d."
    ),
    until: str = typer.Option(
        "now", "--until", help="End (exclusive): ISO date/time, 'now', or an age."
    ),
    status: str | None = STATUS_OPT,
    workspace: str | None = WORKSPACE_OPT,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Show what the current mapping makes of each request; publish nothing.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Re-submit archived requests through the current pipeline with the current mapping.

    Each becomes a new request linked to its original (replay_of); replaying the same
    request again with the same mapping creates nothing new.
    """

    async def work(settings: CommonSettings) -> dict[str, Any]:
        start, end = _window(since, until)
        wanted = _status(status)
        async with database(settings) as conn:
            config = await _webhook(conn, webhook, workspace)
        if "disabled" in (config.status, config.workspace_status) and not dry_run:
            what = "webhook" if config.status == "disabled" else "workspace"
            raise CliError(
                f"the {what} is disabled: the pipeline would refuse the replayed requests",
                hint=f"enable the {what} first (or look with --dry-run)",
            )
        try:
            mapper = replay.compile_mapper(config)
        except ValueError as exc:  # shared.mapping.MappingError
            raise CliError(
                f"the webhook's current mapping is invalid: {exc}",
                hint="fix it with `leadwire mappings ...` first",
            ) from exc
        fingerprint = replay.mapping_fingerprint(config.mapping, config.default_region)
        with _progress(enabled=True) as progress:
            reading = progress.add_task("reading archive", total=None)
            async with _store(settings) as store:
                found = await find_archived(
                    store,
                    workspace_id=config.workspace_id,
                    webhook_id=config.id,
                    since=start,
                    until=end,
                    status=wanted,
                    with_records=True,
                    on_listed=lambda n: progress.update(reading, total=n),
                    on_loaded=lambda: progress.advance(reading),
                )
            planned = replay.plan(found, webhook=config, mapper=mapper, fingerprint=fingerprint)
            if not dry_run:
                to_publish = [p for p in planned if p.kind != "skipped"]
                publishing = progress.add_task("replaying", total=len(to_publish))
                await _publish(settings, to_publish, lambda n: progress.advance(publishing, n))
        summary = replay.Summary()
        summary.count(planned)
        return {
            "dry_run": dry_run,
            "webhook_id": str(config.id),
            "workspace_id": str(config.workspace_id),
            "since": start.isoformat(),
            "until": end.isoformat(),
            "status": wanted,
            "mapping_fingerprint": fingerprint,
            "summary": summary.as_dict(),
            "requests": [p.describe() for p in planned],
        }

    doc = _run(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_describe_replay)


async def _publish(
    settings: CommonSettings, items: list[replay.Planned], on_published: Callable[[int], None]
) -> None:
    publisher = Publisher(settings, client_id="leadwire-replay")
    try:
        await publisher.start()
        await replay.publish(items, publisher=publisher, on_published=on_published)
    except KafkaUnavailable as exc:
        raise CliError(
            f"Kafka did not acknowledge the replay: {exc}",
            hint="nothing is lost: run the same replay again once Kafka is up "
            "(replayed requests keep their ids, so none is created twice)",
        ) from exc
    finally:
        await publisher.stop()


def _describe_replay(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for item in doc["requests"]:
        archived, current = item["archived"], item["current"]
        line = f"{item['request_id']}  {item['received_at']}  archived: {archived['status']}"
        if current["outcome"] == "replay":
            changed = ", ".join(item["changed_fields"]) or "no field changes"
            line += f"  -> replay as {item['new_request_id']} ({changed})"
        elif current["outcome"] == "rejected":
            fields = ", ".join(f"{e['field']}: {e['code']}" for e in current["errors"])
            line += f"  -> rejected by the current mapping ({fields})"
        else:
            line += f"  -> skipped ({current['reason']})"
        lines.append(line)
        if doc["dry_run"] and current["lead"] is not None:
            lines.append(f"    archived lead: {orjson.dumps(archived['lead']).decode()}")
            lines.append(f"    current lead:  {orjson.dumps(current['lead']).decode()}")
    s = doc["summary"]
    mode = "dry run, nothing published: " if doc["dry_run"] else ""
    lines.append(
        f"{mode}found {s['found']}, replayed {s['replayed']}, rejected {s['rejected']}, skipped {s['skipped']}"
    )
    if not doc["requests"]:
        lines.insert(0, "no archived requests in that window")
    return "\n".join(lines)
