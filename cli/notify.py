"""``leadwire notify set-rule|remove-rule|high-priority|show|token``: a workspace's
notification rules, its high-priority SMS rule and its real-time (Socket.IO) token.

Settings are stored in ``notification_settings`` and read by the notifier for every
batch of events, so a change applies to the next events without a restart.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import asyncpg
import typer

from cli import repository as repo
from cli.context import load_settings, run_db
from cli.options import Workspace
from cli.output import CliError, emit, fail, table
from services.notifier import admin
from services.notifier.admin import Channel, EventKind, HighPriority, NotificationSettings, Rule

notify_app = typer.Typer(
    name="notify",
    help="Notifications: which events go to which channel (realtime, email, SMS) and to whom.",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
EventOpt = Annotated[EventKind, typer.Option("--event", "-e", help="The event that triggers it.")]
ChannelOpt = Annotated[Channel, typer.Option("--channel", "-c", help="Where it goes.")]


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")


# --- validation -----------------------------------------------------------


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]


def check_email(address: str) -> str:
    try:
        return admin.check_email(address)
    except admin.InvalidRecipient as exc:
        raise CliError(exc.message, hint=exc.hint, exit_code=2) from None


def check_phone(number: str, region: str) -> str:
    try:
        return admin.check_phone(number, region)
    except admin.InvalidRecipient as exc:
        raise CliError(exc.message, hint=exc.hint, exit_code=2) from None


def recipients_for(channel: Channel, to: str | None, region: str) -> tuple[str, ...]:
    if channel is Channel.REALTIME:
        if to:
            raise CliError(
                "a realtime rule has no --to: it goes to everyone connected to the workspace",
                exit_code=2,
            )
        return ()
    values = _split(to or "")
    if not values:
        raise CliError(
            f"an {channel.value} rule needs --to",
            hint="--to a@example.com,b@example.com"
            if channel is Channel.EMAIL
            else "--to +15551234567",
            exit_code=2,
        )
    check = check_email if channel is Channel.EMAIL else (lambda v: check_phone(v, region))
    return tuple(dict.fromkeys(check(v) for v in values))


# --- stored settings ------------------------------------------------------------------


def _about(ws: dict[str, Any]) -> dict[str, Any]:
    return {"workspace_id": str(ws["id"]), "workspace": ws["name"]}


async def _describe(conn: asyncpg.Connection, ws: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**_about(ws), **await admin.describe(conn, ws["id"])}
    except admin.InvalidStoredSettings as exc:
        raise _invalid(exc) from None


async def _update(
    conn: asyncpg.Connection, ws: dict[str, Any], change: admin.Change
) -> dict[str, Any]:
    try:
        return {**_about(ws), **await admin.update(conn, ws["id"], change)}
    except admin.InvalidStoredSettings as exc:
        raise _invalid(exc) from None


def _invalid(exc: admin.InvalidStoredSettings) -> CliError:
    return CliError(
        str(exc),
        hint="fix them with `leadwire notify set-rule` / `remove-rule` after "
        "resetting them: UPDATE notification_settings SET settings = '{}'",
    )


def _text(doc: dict[str, Any]) -> str:
    lines = [f"workspace {doc['workspace']} ({doc['workspace_id']})"]
    rules = [
        {
            "event": r["event"],
            "channel": r["channel"],
            "recipients": ", ".join(r["recipients"]) or "(workspace room)",
        }
        for r in doc["rules"]
    ]
    lines.append("rules" + (" (defaults)" if doc["defaults"] else "") + ":")
    lines.append(table(rules, ["event", "channel", "recipients"]))
    hp = doc["high_priority"]
    if hp:
        when = " and ".join(
            f"{c['field']}={c['value']}"
            if c["op"] == "eq"
            else f"{c['field']} in {','.join(c['value'])}"
            for c in hp["conditions"]
        )
        lines.append(f"high priority: when {when} -> SMS {', '.join(hp['sms_recipients'])}")
    else:
        lines.append("high priority: (none)")
    token = (
        "set"
        if doc["realtime_token"]["set"]
        else "not set (create it with `leadwire notify token`)"
    )
    lines.append(f"real-time token: {token}")
    return "\n".join(lines)


# --- commands -------------------------------------------------------------------------


@notify_app.command("set-rule")
def set_rule(
    workspace: Workspace,
    event: EventOpt,
    channel: ChannelOpt,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Comma-separated emails (email) or phones (sms); none for realtime."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Send EVENT to CHANNEL (replaces the recipients of an existing rule for both)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repo.get_workspace(conn, workspace)
        rule = Rule(
            event=event,
            channel=channel,
            recipients=recipients_for(channel, to, ws["default_region"]),
        )
        return await _update(conn, ws, lambda s: s.with_rule(rule))

    doc = run_db(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_text)


@notify_app.command("remove-rule")
def remove_rule(
    workspace: Workspace,
    event: EventOpt,
    channel: ChannelOpt,
    as_json: Json = False,
) -> None:
    """Stop sending EVENT to CHANNEL."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repo.get_workspace(conn, workspace)

        def change(s: NotificationSettings) -> NotificationSettings:
            updated, removed = s.without_rule(event, channel)
            if not removed:
                raise CliError(
                    f"workspace {ws['name']!r} has no {event.value} -> {channel.value} rule",
                    hint=f"see `leadwire notify show --workspace {ws['name']}`",
                )
            return updated

        return await _update(conn, ws, change)

    doc = run_db(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_text)


@notify_app.command("high-priority")
def high_priority(
    workspace: Workspace,
    when: Annotated[
        list[str] | None,
        typer.Option(
            "--when",
            help="field=value (or field=a,b for any of several); repeat for AND. Fields: "
            "product, lead_status, crm_id, ... or a custom field. Case-insensitive.",
        ),
    ] = None,
    sms: Annotated[
        str | None, typer.Option("--sms", help="Comma-separated phones to text.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the high-priority rule.")] = False,
    as_json: Json = False,
) -> None:
    """Text these phones when a lead matches every --when condition."""
    if clear and (when or sms):
        fail_usage("--clear takes no --when or --sms", as_json)
    if not clear and (not when or not sms):
        fail_usage(
            "give --when and --sms (or --clear)",
            as_json,
            hint="e.g. --when product=Solar --sms +15551234567",
        )

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repo.get_workspace(conn, workspace)
        rule: HighPriority | None = None
        if not clear:
            try:
                conditions = tuple(admin.parse_condition(w) for w in when or [])
            except ValueError as exc:
                raise CliError(str(exc), hint="--when product=Solar", exit_code=2) from None
            phones = tuple(
                dict.fromkeys(check_phone(p, ws["default_region"]) for p in _split(sms or ""))
            )
            if not phones:
                raise CliError("--sms needs at least one phone", exit_code=2)
            rule = HighPriority(conditions=conditions, sms_recipients=phones)
        return await _update(conn, ws, lambda s: s.model_copy(update={"high_priority": rule}))

    doc = run_db(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_text)


@notify_app.command("show")
def show(workspace: Workspace, as_json: Json = False) -> None:
    """Show a workspace's notification rules."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return await _describe(conn, await repo.get_workspace(conn, workspace))

    doc = run_db(work, as_json=as_json)
    emit(doc, as_json=as_json, text=_text)


@notify_app.command("token")
def token(
    workspace: Workspace,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new token; the old one stops working.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Create (first call) or rotate the workspace's real-time token and print it.

    Only its sha256 is stored, so it is printed once: keep it, or rotate it.
    """
    settings = load_settings()

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repo.get_workspace(conn, workspace)
        try:
            value, rotated = await admin.issue_token(conn, ws["id"], rotate=rotate)
        except admin.TokenExists:
            raise CliError(
                f"workspace {ws['name']!r} already has a real-time token (it is shown only once)",
                hint=f"make a new one with `leadwire notify token --workspace {ws['name']} --rotate`",
            ) from None
        return {
            **_about(ws),
            "token": value,
            "rotated": rotated,
            "socketio_url": f"http://{settings.http_host}:{settings.notifier_port}",
            "auth": {"workspace_id": str(ws["id"]), "token": value},
        }

    doc = run_db(work, as_json=as_json)
    emit(
        doc,
        as_json=as_json,
        text=lambda d: (
            f"real-time token for {d['workspace']} ({'rotated' if d['rotated'] else 'created'}; "
            f"shown only this once):\n{d['token']}\n"
            f"connect a Socket.IO client to {d['socketio_url']} with "
            f'auth={{"workspace_id": "{d["workspace_id"]}", "token": "<token>"}}'
        ),
    )


def fail_usage(message: str, as_json: bool, *, hint: str | None = None) -> NoReturn:
    fail(CliError(message, hint=hint, exit_code=2), as_json=as_json)
