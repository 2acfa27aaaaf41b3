"""``leadwire archive show|list|search|prune|compact|export`` and ``leadwire replay``: the
request archive (segments in S3, an index in Postgres).

The archive holds one log record per finished request (see docs/archiver.md). These
commands read it through :mod:`services.archiver.admin`; ``replay`` re-submits archived
requests through the current pipeline (the raw topic) with the webhook's current mapping.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import repository as repo
from cli.context import database, run_async
from cli.options import WebhookWorkspace, WorkspaceFilter
from cli.output import CliError, JsonFlag, emit, table
from services.archiver import admin
from shared.settings import CommonSettings

T = TypeVar("T")

archive_app = typer.Typer(
    name="archive",
    help="The request archive: show one request, list or search requests, prune, compact, "
    "export segments.",
    no_args_is_help=True,
)

Webhook = Annotated[
    str, typer.Option("--webhook", help="Webhook id, or name (unique or with --workspace).")
]
Status = Annotated[
    str | None,
    typer.Option("--status", help="Only requests with this status: processed, failed or rejected."),
]
Until = Annotated[
    str, typer.Option("--until", help="End (exclusive): ISO date/time, 'now', or an age.")
]
Limit = Annotated[
    int, typer.Option("--limit", min=1, max=10000, help="At most this many requests per page.")
]
Cursor = Annotated[
    str | None,
    typer.Option("--cursor", help="Continue after the last page (its next_cursor)."),
]
SINCE_HELP = "Start: ISO date/time (UTC if naive) or an age like 24h, 7d."


def register(app: typer.Typer) -> None:
    app.add_typer(archive_app, name="archive")
    app.command("replay")(replay_command)


# --- plumbing -------------------------------------------------------------------------


def _run(work: Callable[[CommonSettings], Coroutine[Any, Any, T]], *, as_json: bool) -> T:
    """:func:`run_async`, with the archive's errors shown like the CLI's own."""

    async def guarded(settings: CommonSettings) -> T:
        try:
            return await work(settings)
        except admin.AdminError as err:
            raise CliError(err.message, hint=err.hint) from err

    return run_async(guarded, as_json=as_json)


async def _webhook(
    settings: CommonSettings, webhook: str, workspace: str | None
) -> admin.WebhookConfig:
    """The webhook as it is configured now (the CLI's one webhook look-up)."""
    async with database(settings) as conn:
        row = await repo.get_webhook(conn, webhook, workspace)
    return admin.WebhookConfig(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        workspace_name=row["workspace"],
        status=row["status"],
        workspace_status=row["workspace_status"],
        mapping=row["mapping"],
        default_region=row["default_region"],
    )


def _time(value: str, option: str) -> datetime:
    try:
        return admin.parse_time(value)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from exc


def _choice(value: str | None, option: str, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise CliError(f"{option} {value!r} is not one of {', '.join(allowed)}")
    return value


def _window(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = _time(since, "--since"), _time(until, "--until")
    if start >= end:
        raise CliError("--since must be before --until")
    return start, end


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
    request_id: Annotated[str, typer.Argument(help="The request id (log_id) to show.")],
    as_json: JsonFlag = False,
) -> None:
    """Show the archived log record of one request."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        rid = repo.as_uuid(request_id)
        if rid is None:
            raise CliError(f"{request_id!r} is not a request id (a UUID)")
        return await admin.show_record(settings, rid)

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


# --- archive list / search ------------------------------------------------------------


async def _search(
    settings: CommonSettings,
    query: admin.Query,
    *,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    page = await admin.search_requests(settings, query, limit=limit, cursor=cursor)
    return {
        "webhook_id": str(query.webhook_id) if query.webhook_id else None,
        "workspace_id": str(query.workspace_id) if query.workspace_id else None,
        "since": query.since.isoformat() if query.since else None,
        "until": query.until.isoformat() if query.until else None,
        "status": query.status,
        "error_type": query.error_type,
        "match_type": query.match_type,
        **page,
    }


def _describe_page(doc: dict[str, Any]) -> str:
    text = table(
        doc["requests"],
        ["request_id", "received_at", "status", "match_type", "error_type", "replay_of"],
    )
    text += f"\n{doc['count']} request(s)"
    if doc["next_cursor"]:
        text += f"; more with --cursor {doc['next_cursor']}"
    return text


async def _ids(
    settings: CommonSettings, webhook: str | None, workspace: str | None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(workspace id, webhook id) from ids or names. Ids need no look-up, so they work
    for a deleted webhook or workspace too."""
    ws_id, wh_id = repo.as_uuid(workspace or ""), repo.as_uuid(webhook or "")
    if webhook is not None and wh_id is None:
        config = await _webhook(settings, webhook, workspace)
        return config.workspace_id, config.id
    if workspace is not None and ws_id is None:
        async with database(settings) as conn:
            ws_id = (await repo.get_workspace(conn, workspace))["id"]
    return ws_id, wh_id


async def _query(
    settings: CommonSettings,
    *,
    webhook: str | None,
    workspace: str | None,
    since: str,
    until: str,
    status: str | None,
    error_type: str | None = None,
    match_type: str | None = None,
) -> admin.Query:
    start, end = _window(since, until)
    ws_id, wh_id = await _ids(settings, webhook, workspace)
    return admin.Query(
        workspace_id=ws_id,
        webhook_id=wh_id,
        status=_choice(status, "--status", admin.STATUSES),
        error_type=error_type,
        match_type=_choice(match_type, "--match-type", admin.MATCH_TYPES),
        since=start,
        until=end,
    )


@archive_app.command("list")
def list_command(
    webhook: Webhook,
    since: Annotated[str, typer.Option("--since", help=SINCE_HELP)] = "24h",
    until: Until = "now",
    status: Status = None,
    workspace: WebhookWorkspace = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    as_json: JsonFlag = False,
) -> None:
    """List a webhook's archived requests received in a time window, oldest first."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        query = await _query(
            settings, webhook=webhook, workspace=workspace, since=since, until=until, status=status
        )
        return await _search(settings, query, limit=limit, cursor=cursor)

    emit(_run(work, as_json=as_json), as_json=as_json, text=_describe_page)


@archive_app.command("search")
def search_command(
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", help="Only this webhook (id, or name: unique or with -W)."),
    ] = None,
    workspace: WorkspaceFilter = None,
    status: Status = None,
    error_type: Annotated[
        str | None,
        typer.Option(
            "--error-type", help="Only failures of this type (e.g. database_error, rejected)."
        ),
    ] = None,
    match_type: Annotated[
        str | None,
        typer.Option(
            "--match-type", help="Only processed leads matched by: crm_id, phone, email or new."
        ),
    ] = None,
    since: Annotated[str, typer.Option("--since", help=SINCE_HELP)] = "24h",
    until: Until = "now",
    limit: Limit = 100,
    cursor: Cursor = None,
    as_json: JsonFlag = False,
) -> None:
    """Search archived requests through the index (no bucket listing), oldest first."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        query = await _query(
            settings,
            webhook=webhook,
            workspace=workspace,
            since=since,
            until=until,
            status=status,
            error_type=error_type,
            match_type=match_type,
        )
        return await _search(settings, query, limit=limit, cursor=cursor)

    emit(_run(work, as_json=as_json), as_json=as_json, text=_describe_page)


# --- archive prune --------------------------------------------------------------------


@archive_app.command("prune")
def prune_command(
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            min=1,
            envvar="LEADWIRE_ARCHIVE_RETENTION_DAYS",
            help="Delete archives of requests received on days that ended at least this many "
            "days ago.",
        ),
    ] = 90,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete archived requests older than the retention (by the day they were received)."""

    async def work(settings: CommonSettings) -> dict[str, object]:
        return await admin.prune_archive(settings, older_than_days=older_than, dry_run=dry_run)

    doc = _run(work, as_json=as_json)
    verb = "would delete" if dry_run else "deleted"
    emit(
        doc,
        as_json=as_json,
        text=lambda d: (
            f"{verb} {d['segments']} segment(s) holding {d['records']} indexed "
            f"record(s) received before {d['cutoff']}, and {d['legacy_records']} record(s) of the "
            f"first layout from {len(d['days'])} day folder(s)"
        ),
    )


# --- archive compact ------------------------------------------------------------------


@archive_app.command("compact")
def compact_command(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only days from this one on (ISO date or an age); all without it."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be rewritten; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Rewrite archives of the first layout (one object per request) into segments with
    index rows, then delete the old objects. Safe to run again, or while the archiver runs."""

    async def work(settings: CommonSettings) -> dict[str, object]:
        start = _time(since, "--since") if since else None
        with _progress(enabled=True) as bar:
            task = bar.add_task("compacting day folders", total=None)
            return await admin.compact_archive(
                settings, since=start, dry_run=dry_run, on_day=lambda _: bar.advance(task)
            )

    doc = _run(work, as_json=as_json)
    verb = "would rewrite" if dry_run else "rewrote"
    emit(
        doc,
        as_json=as_json,
        text=lambda d: (
            f"{verb} {d['rewritten']} record(s) into {len(d['segments'])} segment(s) "
            f"from {len(d['days'])} day folder(s); {d['already_indexed']} already in segments, "
            f"{d['unreadable']} unreadable (left in place), {d['deleted_objects']} object(s) deleted"
        ),
    )


# --- archive export -------------------------------------------------------------------


@archive_app.command("export")
def export_command(
    day: Annotated[str, typer.Option("--day", help="The UTC day (YYYY-MM-DD) to export.")],
    to: Annotated[
        Path, typer.Option("--to", help="Folder to write the segments into (created).")
    ] = Path("archive-export"),
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy a day's segments (gzip NDJSON, as stored) into a folder, for DuckDB, zcat or jq."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        start = _time(day, "--day").replace(hour=0, minute=0, second=0, microsecond=0)
        ws_id, _ = await _ids(settings, None, workspace)
        return await admin.export_segments(
            settings, since=start, until=start + timedelta(days=1), workspace_id=ws_id, to=to
        )

    doc = _run(work, as_json=as_json)
    emit(
        doc,
        as_json=as_json,
        text=lambda d: f"{len(d['files'])} segment(s), {d['bytes']} bytes, written under {d['to']}",
    )


# --- replay ---------------------------------------------------------------------------


def replay_command(
    webhook: Webhook,
    since: Annotated[str, typer.Option("--since", help=SINCE_HELP)],
    until: Until = "now",
    status: Status = None,
    workspace: WebhookWorkspace = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what the current mapping makes of each request; publish nothing.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-submit archived requests through the current pipeline with the current mapping.

    Each becomes a new request linked to its original (replay_of); replaying the same
    request again with the same mapping creates nothing new.
    """

    async def work(settings: CommonSettings) -> dict[str, Any]:
        start, end = _window(since, until)
        wanted = _choice(status, "--status", admin.STATUSES)
        config = await _webhook(settings, webhook, workspace)
        with _progress(enabled=True) as bar:
            reading = bar.add_task("reading archive", total=None)
            publishing = bar.add_task("replaying", total=0, visible=False)
            follow = admin.ReplayProgress(
                listed=lambda n: bar.update(reading, total=n),
                loaded=lambda n: bar.advance(reading, n),
                publishing=lambda n: bar.update(publishing, total=n, visible=True),
                published=lambda n: bar.advance(publishing, n),
            )
            return await admin.replay_requests(
                settings,
                config,
                since=start,
                until=end,
                status=wanted,
                dry_run=dry_run,
                progress=follow,
            )

    doc = _run(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_describe_replay)


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
