"""``leadwire archive show|list|prune`` and ``leadwire replay``: the request archive in S3.

The archive holds one log record per finished request (see docs/archiver.md). These
commands read it through :mod:`services.archiver.admin`; ``replay`` re-submits archived
requests through the current pipeline (the raw topic) with the webhook's current mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import repository as repo
from cli.context import database, run_async
from cli.options import WebhookWorkspace
from cli.output import CliError, JsonFlag, emit, table
from services.archiver import admin
from shared.settings import CommonSettings

T = TypeVar("T")

archive_app = typer.Typer(
    name="archive",
    help="The request archive in S3: show one request, list a webhook's requests, prune old ones.",
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


def _window(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = _time(since, "--since"), _time(until, "--until")
    if start >= end:
        raise CliError("--since must be before --until")
    return start, end


def _status(status: str | None) -> str | None:
    if status is not None and status not in admin.STATUSES:
        raise CliError(f"--status {status!r} is not one of {', '.join(admin.STATUSES)}")
    return status


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


# --- archive list ---------------------------------------------------------------------


@archive_app.command("list")
def list_command(
    webhook: Webhook,
    since: Annotated[str, typer.Option("--since", help=SINCE_HELP)] = "24h",
    until: Until = "now",
    status: Status = None,
    workspace: WebhookWorkspace = None,
    as_json: JsonFlag = False,
) -> None:
    """List a webhook's archived requests received in a time window."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        start, end = _window(since, until)
        wanted = _status(status)
        ws_id, wh_id = repo.as_uuid(workspace or ""), repo.as_uuid(webhook)
        if ws_id is None or wh_id is None:
            # Names (or a webhook id alone): the workspace comes from Postgres. Both ids
            # given work without Postgres (e.g. for a deleted webhook).
            config = await _webhook(settings, webhook, workspace)
            ws_id, wh_id = config.workspace_id, config.id
        found = await admin.list_requests(
            settings, workspace_id=ws_id, webhook_id=wh_id, since=start, until=end, status=wanted
        )
        return {
            "webhook_id": str(wh_id),
            "workspace_id": str(ws_id),
            "since": start.isoformat(),
            "until": end.isoformat(),
            "status": wanted,
            "count": len(found),
            "requests": found,
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
        text=lambda d: f"{verb} {d['records']} record(s) from {len(d['days'])} day folder(s)",
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
        wanted = _status(status)
        config = await _webhook(settings, webhook, workspace)
        with _progress(enabled=True) as bar:
            reading = bar.add_task("reading archive", total=None)
            publishing = bar.add_task("replaying", total=0, visible=False)
            follow = admin.ReplayProgress(
                listed=lambda n: bar.update(reading, total=n),
                loaded=lambda: bar.advance(reading),
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
