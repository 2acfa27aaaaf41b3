"""``leadwire deadletter list|show|retry``: what the consumers and the notifier gave up
on, why, and sending it back once a fix is in. The operations are the management admin's
(:mod:`services.api.deadletters`, through ``services.api.admin``), which the management
API calls too; here they see every dead letter.

``list`` prints ids, reason codes, sources and the event's ids, never the reason's text
or the message (they may quote a lead's values); ``show`` prints one dead letter whole,
for the operator who asks for it.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.progress import Progress, TaskID

from cli.context import database, run_async
from cli.output import CliError, JsonFlag, emit, progress_bar, table
from services.api.admin import deadletters as dead
from services.archiver.admin import parse_time
from shared.settings import CommonSettings

deadletter_app = typer.Typer(
    name="deadletter",
    help="Dead letters: messages a consumer or the notifier gave up on. List, show, and "
    "send them back once the cause is fixed.",
    no_args_is_help=True,
)

TopicOpt = Annotated[
    str | None,
    typer.Option(
        "--topic",
        help="deadletter (the consumers') or notifications.deadletter; default both.",
    ),
]
SinceOpt = Annotated[
    str, typer.Option("--since", help="Dead letters from: an age like 24h, 7d, or an ISO time.")
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Only this reason code (permanent, undecodable, ...)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(deadletter_app, name="deadletter")


# --- plumbing -------------------------------------------------------------------------


def _topics(topic: str | None) -> tuple[str, ...]:
    if topic is not None and topic not in dead.TOPICS:
        raise CliError(f"--topic {topic!r} is not one of {', '.join(dead.TOPICS)}", exit_code=2)
    return dead.topics_named(topic)


def _since(value: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise CliError(f"--since: {exc}", exit_code=2) from exc


def _bar_step(bar: Progress, label: str) -> dead.Step:
    task = bar.add_task(label, total=None)
    return dead.Step(functools.partial(_set_total, bar, task), functools.partial(bar.advance, task))


def _set_total(bar: Progress, task: TaskID, total: int) -> None:
    bar.update(task, total=total)


def _db(settings: CommonSettings) -> dead.Database:
    return functools.partial(database, settings)


async def _gather(
    settings: CommonSettings,
    names: tuple[str, ...],
    *,
    since: datetime,
    reason: str | None,
    bar: Progress,
) -> list[dead.DeadLetter]:
    """The dead letters of ``names`` since ``since`` (of ``reason``), with ``retried_at``."""
    return await dead.gather(
        settings,
        _db(settings),
        names,
        since=since,
        reason=reason,
        progress=functools.partial(_bar_step, bar),
    )


# --- list -----------------------------------------------------------------------------


@deadletter_app.command("list")
def list_command(
    topic: TopicOpt = None,
    since: SinceOpt = "7d",
    reason: ReasonOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters (oldest first) with their reason codes, counted per reason."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        names, start = _topics(topic), _since(since)
        with progress_bar() as bar:
            found = await _gather(settings, names, since=start, reason=reason, bar=bar)
        return {"reason": reason, **dead.listing(found, names=names, since=start)}

    doc = run_async(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_list_text)


def _list_text(doc: dict[str, Any]) -> str:
    rows = [
        {
            **d,
            "reason": d["reason_code"] + (f" ({d['error_class']})" if d["error_class"] else ""),
            "retried": d["retried_at"] or "",
        }
        for d in doc["deadletters"]
    ]
    reasons = ", ".join(f"{k}: {v}" for k, v in doc["by_reason"].items()) or "none"
    return (
        table(rows, ["id", "at", "reason", "source", "group_id", "webhook_id", "retried"])
        + f"\n{doc['count']} dead letter(s) since {doc['since']} ({reasons}); "
        f"{doc['retried']} sent back already"
    )


# --- show -----------------------------------------------------------------------------


@deadletter_app.command("show")
def show_command(
    deadletter_id: Annotated[
        str, typer.Argument(metavar="ID", help="e.g. deadletter:2:15 (see `deadletter list`).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Show one dead letter: its reason, source, ids and the message (decoded if JSON)."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        return dead.show(await _one(settings, deadletter_id))

    doc = run_async(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_show_text)


async def _one(settings: CommonSettings, deadletter_id: str) -> dead.DeadLetter:
    return await dead.get(settings, _db(settings), deadletter_id)


def _show_text(doc: dict[str, Any]) -> str:
    lines = [
        f"dead letter {doc['id']}  at {doc['at']}",
        f"reason      {doc['reason']}",
        f"from        {doc['source']}"
        + (f"  (group {doc['group_id']})" if doc["group_id"] else ""),
    ]
    for key in ("request_id", "workspace_id", "webhook_id", "sends"):
        if doc.get(key) is not None:
            lines.append(f"{key:<12}{doc[key]}")
    lines.append(f"goes back to {doc['target'] or '(nowhere: it names no source to go back to)'}")
    if doc["retried_at"]:
        lines.append(f"sent back   {doc['retried_at']}")
    lines.append("")
    shown = doc["payload"] if doc["payload"] is not None else doc["entry"]
    lines.append(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return "\n".join(lines)


# --- retry ----------------------------------------------------------------------------


@deadletter_app.command("retry")
def retry_command(
    deadletter_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The dead letter to send back.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter of the window not sent back yet.")
    ] = False,
    topic: TopicOpt = None,
    since: SinceOpt = "7d",
    reason: ReasonOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be sent back; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send dead letters back, once each, after the cause is fixed.

    A consumer's goes to its source topic (the message unchanged), a notification's
    sends go back to the queue. One sent back before is skipped."""

    async def work(settings: CommonSettings) -> dict[str, Any]:
        if (deadletter_id is None) == (not all_):
            raise CliError("give one dead letter ID or --all", exit_code=2)
        with progress_bar() as bar:
            if deadletter_id is not None:
                letters = [await _one(settings, deadletter_id)]
            else:
                letters = await _gather(
                    settings, _topics(topic), since=_since(since), reason=reason, bar=bar
                )
            return await dead.retry(
                settings,
                _db(settings),
                letters,
                dry_run=dry_run,
                progress=functools.partial(_bar_step, bar),
            )

    doc = run_async(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_retry_text)


def _retry_text(doc: dict[str, Any]) -> str:
    verb = "would send back" if doc["dry_run"] else "sent back"
    lines = [f"{verb} {r['id']} -> {r['target']}" for r in doc["retried"]]
    lines += [f"skipped {s['id']}: {s['why']}" for s in doc["skipped"]]
    s = doc["summary"]
    mode = "dry run, nothing changed: " if doc["dry_run"] else ""
    lines.append(f"{mode}{verb} {s['retried']}, skipped {s['skipped']}")
    return "\n".join(lines)
