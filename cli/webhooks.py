"""``leadwire webhook create|list|show|update|disable|enable|rotate-secret``.

A webhook is one source's URL: ``{public_url}/webhooks/{id}``. Its secret (for the
signed and credential modes) is printed once, at creation or rotation, and never again:
basic and api-key secrets are stored only as hashes (see :mod:`shared.secrets`). The
options are checked in :mod:`cli.webhook_fields`; what is printed is
:mod:`cli.webhook_views`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.options import WebhookWorkspace, Workspace, WorkspaceFilter
from cli.output import CliError, JsonFlag, attempt, emit, table
from cli.webhook_fields import (
    basic_username,
    check_auth_mode,
    check_header,
    check_idempotency_field,
    check_rate_limit,
    issue_secret,
    parse_duration,
    parse_size,
    read_mapping,
    template_named,
)
from cli.webhook_views import created_doc, describe, secret_lines, view
from cli.workspaces import check_name
from shared.secrets import AUTH_MODES, HMAC_MODES, generate_verify_token
from shared.templates import TEMPLATES

webhook_app = typer.Typer(
    name="webhook",
    help="Webhooks: one URL per lead source, with its auth mode, limits and mapping.",
    no_args_is_help=True,
)

DEFAULT_GRACE = "24h"
WebhookArg = Annotated[str, typer.Argument(help="Webhook id, or its name.")]


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")


@webhook_app.command("create")
def create(
    workspace: Workspace,
    name: Annotated[str, typer.Option("--name", "-n", help="A name unique in the workspace.")],
    template: Annotated[
        str, typer.Option("--template", "-t", help=f"Vendor template: {', '.join(TEMPLATES)}.")
    ] = "generic",
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth", help=f"Auth mode: {', '.join(AUTH_MODES)} (default: the template's)."
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option("--rate-limit", help="Requests per minute (default: the gateway's)."),
    ] = None,
    max_body: Annotated[
        str | None, typer.Option("--max-body", help="Largest body accepted, e.g. 65536, 64k, 1mb.")
    ] = None,
    idempotency_field: Annotated[
        str | None,
        typer.Option("--idempotency-field", help="Body field holding the vendor's lead id (path)."),
    ] = None,
    mapping_file: Annotated[
        str | None,
        typer.Option("--mapping", help="Mapping file (.json/.yaml) instead of the template's."),
    ] = None,
    api_key_header: Annotated[
        str, typer.Option("--api-key-header", help="Header carrying the key (api-key mode).")
    ] = "X-API-Key",
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret", help="Use this secret instead of generating one (e.g. an app secret)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a webhook; prints its URL and, for secret modes, the secret (once)."""

    custom_mapping = attempt(
        lambda: read_mapping(mapping_file) if mapping_file else None, as_json=as_json
    )

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        tpl = template_named(template)
        mode = check_auth_mode(auth or tpl.auth_mode)
        ws = await repo.get_workspace(conn, workspace)
        plain, stored = issue_secret(mode, secret)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "workspace_id": ws["id"],
            "name": check_name("webhook", name),
            "template": tpl.name,
            "auth_mode": mode,
            "secret": stored or None,
            "basic_username": basic_username() if mode == "basic" else None,
            "api_key_header": check_header(api_key_header),
            "rate_limit_per_minute": _rate_limit(rate_limit),
            "max_body_bytes": parse_size(max_body) if max_body is not None else None,
            "idempotency_field": _idempotency_field(idempotency_field, tpl.idempotency_field),
            "mapping": (custom_mapping or tpl.mapping).to_stored(),
            "verify_token": generate_verify_token() if tpl.name == "facebook" else None,
        }
        out = view(await repo.create_webhook(conn, values))
        out["secret"] = plain or None
        return out

    data = run_db(work, as_json=as_json)
    emit(
        created_doc(data),
        as_json=as_json,
        text=lambda d: "\n".join([f"created {describe(data)}", *secret_lines(d)]),
    )


def _rate_limit(value: int | None) -> int | None:
    return check_rate_limit(value) if value is not None else None


def _idempotency_field(given: str | None, template_default: str | None) -> str | None:
    """The option's path; '' = none; not given = the template's."""
    if given:
        return check_idempotency_field(given)
    return None if given == "" else template_default


@webhook_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List webhooks (all workspaces, or one)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws_id = await repo.workspace_filter(conn, workspace)
        return [view(r) for r in await repo.list_webhooks(conn, ws_id)]

    rows = run_db(work, as_json=as_json)
    emit(
        rows,
        as_json=as_json,
        text=lambda r: table(
            r,
            ["workspace", "name", "id", "status", "template", "auth_mode", "rate_limit_per_minute"],
        ),
    )


@webhook_app.command("show")
def show(
    webhook: WebhookArg, workspace: WebhookWorkspace = None, as_json: JsonFlag = False
) -> None:
    """Show one webhook (its secret is never shown again)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return view(await repo.get_webhook(conn, webhook, workspace))

    emit(run_db(work, as_json=as_json), as_json=as_json, text=describe)


@webhook_app.command("update")
def update(
    webhook: WebhookArg,
    workspace: WebhookWorkspace = None,
    rename: Annotated[str | None, typer.Option("--rename", help="A new name.")] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option("--rate-limit", help="Requests per minute; 0 = the gateway's default."),
    ] = None,
    max_body: Annotated[
        str | None,
        typer.Option("--max-body", help="Largest body, e.g. 64k; 0 = the gateway's default."),
    ] = None,
    idempotency_field: Annotated[
        str | None,
        typer.Option("--idempotency-field", help="Body path of the vendor's lead id; '' = none."),
    ] = None,
    api_key_header: Annotated[
        str | None, typer.Option("--api-key-header", help="Header of the api key.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a webhook's name or limits (auth mode and mapping have their own commands)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await repo.get_webhook(conn, webhook, workspace)
        changes: dict[str, Any] = {}
        if rename is not None:
            changes["name"] = check_name("webhook", rename)
        if rate_limit is not None:
            changes["rate_limit_per_minute"] = (
                None if rate_limit == 0 else check_rate_limit(rate_limit)
            )
        if max_body is not None:
            changes["max_body_bytes"] = None if max_body.strip() == "0" else parse_size(max_body)
        if idempotency_field is not None:
            changes["idempotency_field"] = (
                check_idempotency_field(idempotency_field) if idempotency_field else None
            )
        if api_key_header is not None:
            changes["api_key_header"] = check_header(api_key_header)
        if not changes:
            raise CliError(
                "nothing to change",
                hint="pass --rename, --rate-limit, --max-body, --idempotency-field or --api-key-header",
                exit_code=2,
            )
        try:
            return view(await repo.update_webhook(conn, row["id"], changes))
        except asyncpg.UniqueViolationError:
            raise CliError(f"this workspace already has a webhook named {rename!r}") from None

    emit(run_db(work, as_json=as_json), as_json=as_json, text=lambda w: f"updated {describe(w)}")


def _set_status(webhook: str, workspace: str | None, status: str, as_json: bool) -> None:
    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await repo.get_webhook(conn, webhook, workspace)
        return view(await repo.update_webhook(conn, row["id"], {"status": status}))

    emit(
        run_db(work, as_json=as_json),
        as_json=as_json,
        text=lambda w: f"webhook {w['name']} ({w['id']}) is {w['status']}",
    )


@webhook_app.command("disable")
def disable(
    webhook: WebhookArg, workspace: WebhookWorkspace = None, as_json: JsonFlag = False
) -> None:
    """Stop accepting requests on a webhook (the gateway refuses them)."""
    _set_status(webhook, workspace, "disabled", as_json)


@webhook_app.command("enable")
def enable(
    webhook: WebhookArg, workspace: WebhookWorkspace = None, as_json: JsonFlag = False
) -> None:
    """Accept requests on a webhook again."""
    _set_status(webhook, workspace, "active", as_json)


@webhook_app.command("rotate-secret")
def rotate_secret(
    webhook: WebhookArg,
    workspace: WebhookWorkspace = None,
    grace: Annotated[
        str,
        typer.Option(
            "--grace", help="How long the old secret stays valid: 24h, 30m, 90s, 0 = not at all."
        ),
    ] = DEFAULT_GRACE,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Use this secret instead of generating one.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new secret; the old one keeps working for the grace period."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        period = parse_duration(grace)
        row = await repo.get_webhook(conn, webhook, workspace)
        mode = row["auth_mode"]
        if mode == "none":
            raise CliError(
                f"webhook {row['name']!r} has auth mode none: there is no secret to rotate",
                hint="its URL is the credential; create a new webhook to change it",
            )
        plain, stored = issue_secret(mode, secret)
        # basic keeps its username: during the grace period the old password still works.
        extra = (
            {"basic_username": basic_username()}
            if mode == "basic" and not row["basic_username"]
            else {}
        )
        updated = await repo.rotate_secret(
            conn, row["id"], stored=stored, grace=period, extra=extra
        )
        out = view(updated)
        return {
            "id": out["id"],
            "workspace": out["workspace"],
            "name": out["name"],
            "url": out["url"],
            "auth_mode": mode,
            "secret": plain,
            "basic_username": out["basic_username"],
            "api_key_header": out["api_key_header"],
            "grace_seconds": period.total_seconds(),
            "previous_secret_valid_until": out["previous_secret_valid_until"],
            "signed": mode in HMAC_MODES,
        }

    def text(d: dict[str, Any]) -> str:
        until = d["previous_secret_valid_until"]
        head = [
            f"new secret for webhook {d['name']} ({d['id']})",
            f"  the old one is valid until {until:%Y-%m-%d %H:%M:%S %Z}"
            if until
            else "  the old one no longer works",
        ]
        return "\n".join(head + secret_lines(d))

    data = run_db(work, as_json=as_json)
    emit(data, as_json=as_json, text=text)
