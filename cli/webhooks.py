"""``leadwire webhook create|list|show|update|disable|enable|rotate-secret``.

A webhook is one source's URL: ``{public_url}/webhooks/{id}``. Its secret (for the
signed and credential modes) is printed once, at creation or rotation, and never again:
basic and api-key secrets are stored only as hashes (see :mod:`shared.secrets`). The
operations are the management admin's (:mod:`services.api.admin`, which the management
API offers too); the options are read in :mod:`cli.webhook_fields`; what is printed is
:mod:`cli.webhook_views`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.context import load_settings, run_admin
from cli.options import WebhookWorkspace, Workspace, WorkspaceFilter
from cli.output import JsonFlag, attempt, emit, table
from cli.webhook_fields import (
    Allow,
    ClearCriteria,
    DuplicateKey,
    DuplicateWindow,
    PageToken,
    Require,
    RequireConsent,
    check_idempotency_field,
    check_rate_limit,
    check_secret,
    lead_buying,
    parse_duration,
    parse_size,
    read_mapping,
)
from cli.webhook_views import created_doc, describe, secret_lines, view
from services.api import admin
from shared.secrets import AUTH_MODES
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
    app_secret: Annotated[
        str | None,
        typer.Option(
            "--app-secret",
            help="Facebook app secret: verifies X-Hub-Signature-256 (--auth github --secret S).",
        ),
    ] = None,
    page_token: PageToken = None,
    require: Require = None,
    allow: Allow = None,
    require_consent: RequireConsent = None,
    duplicate_window: DuplicateWindow = None,
    duplicate_key: DuplicateKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a webhook; prints its URL and, for secret modes, the secret (once)."""
    # size: a typer command declares each of its 17 options in its signature.
    custom_mapping = attempt(
        lambda: read_mapping(mapping_file) if mapping_file else None, as_json=as_json
    )
    if app_secret is not None:
        auth, secret = auth or "github", app_secret
    options = attempt(
        lambda: lead_buying(
            None,
            require=require,
            allow=allow,
            require_consent=require_consent,
            duplicate_window=duplicate_window,
            duplicate_key=duplicate_key,
            page_token=page_token,
        ),
        as_json=as_json,
    )

    async def work(repo: admin.Repository) -> dict[str, Any]:
        spec = admin.WebhookSpec(
            name=name,
            template=template,
            auth_mode=auth,
            secret=secret,
            rate_limit_per_minute=_rate_limit(rate_limit),
            max_body_bytes=parse_size(max_body) if max_body is not None else None,
            # Not given: the template's; '': none.
            idempotency_field=(
                check_idempotency_field(idempotency_field)
                if idempotency_field
                else idempotency_field
            ),
            api_key_header=api_key_header,
            mapping=custom_mapping,
            options=options,
        )
        mode = admin.checks.check_auth_mode(auth or admin.checks.template_named(template).auth_mode)
        check_secret(mode, secret)
        ws = await admin.find_workspace(repo, workspace)
        return await admin.create_webhook(
            repo, ws["id"], spec, public_url=load_settings().public_url
        )

    data = run_admin(work, as_json=as_json)
    emit(
        created_doc(data),
        as_json=as_json,
        text=lambda d: "\n".join([f"created {describe(data)}", *secret_lines(d)]),
    )


def _rate_limit(value: int | None) -> int | None:
    return check_rate_limit(value) if value is not None else None


@webhook_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List webhooks (all workspaces, or one)."""

    async def work(repo: admin.Repository) -> list[dict[str, Any]]:
        ws_id = await admin.workspace_filter(repo, workspace)
        return [view(r) for r in await admin.list_webhooks(repo, ws_id)]

    rows = run_admin(work, as_json=as_json)
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

    async def work(repo: admin.Repository) -> dict[str, Any]:
        return view(await admin.find_webhook(repo, webhook, workspace))

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=describe)


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
    require: Require = None,
    allow: Allow = None,
    require_consent: RequireConsent = None,
    clear_criteria: ClearCriteria = False,
    duplicate_window: DuplicateWindow = None,
    duplicate_key: DuplicateKey = None,
    page_token: PageToken = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a webhook's name, limits, acceptance criteria, duplicate-lead window or
    Facebook page token (auth mode and mapping have their own commands)."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        row = await admin.find_webhook(repo, webhook, workspace)
        changes = lead_buying(
            row,
            require=require,
            allow=allow,
            require_consent=require_consent,
            clear=clear_criteria,
            duplicate_window=duplicate_window,
            duplicate_key=duplicate_key,
            page_token=page_token,
        )
        if rename is not None:
            changes["name"] = rename
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
            changes["api_key_header"] = admin.checks.check_header(api_key_header)
        return view(await admin.update_webhook(repo, row, changes))

    emit(
        run_admin(work, as_json=as_json),
        as_json=as_json,
        text=lambda w: f"updated {describe(w)}",
    )


def _set_status(webhook: str, workspace: str | None, status: str, as_json: bool) -> None:
    async def work(repo: admin.Repository) -> dict[str, Any]:
        row = await admin.find_webhook(repo, webhook, workspace)
        return view(await admin.set_webhook_status(repo, row, status))

    emit(
        run_admin(work, as_json=as_json),
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

    async def work(repo: admin.Repository) -> dict[str, Any]:
        period = parse_duration(grace)
        row = await admin.find_webhook(repo, webhook, workspace)
        if row["auth_mode"] != "none":
            check_secret(row["auth_mode"], secret)
        return await admin.rotate_secret(
            repo, row, grace=period, secret=secret, public_url=load_settings().public_url
        )

    def text(d: dict[str, Any]) -> str:
        until = d["previous_secret_valid_until"]
        head = [
            f"new secret for webhook {d['name']} ({d['id']})",
            f"  the old one is valid until {until:%Y-%m-%d %H:%M:%S %Z}"
            if until
            else "  the old one no longer works",
        ]
        return "\n".join(head + secret_lines(d))

    data = run_admin(work, as_json=as_json)
    emit(data, as_json=as_json, text=text)
