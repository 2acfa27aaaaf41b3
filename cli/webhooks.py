"""``leadwire webhook create|list|show|update|disable|enable|rotate-secret``.

A webhook is one source's URL: ``{public_url}/webhooks/{id}``. Its secret (for the
signed and credential modes) is printed once, at creation or rotation, and never again:
basic and api-key secrets are stored only as hashes (see :mod:`shared.secrets`).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import load_settings, run_db
from cli.output import CliError, JsonFlag, attempt, emit, table
from cli.workspaces import check_name
from shared.mapping import Mapping, MappingError, compile_mapping, compile_path, load_mapping_file
from shared.secrets import (
    AUTH_MODES,
    HMAC_MODES,
    check_imported_secret,
    generate_secret,
    generate_verify_token,
    stored_form,
)
from shared.templates import TEMPLATES, get_template

webhook_app = typer.Typer(
    name="webhook",
    help="Webhooks: one URL per lead source, with its auth mode, limits and mapping.",
    no_args_is_help=True,
)

DEFAULT_GRACE = "24h"
MAX_GRACE = timedelta(days=30)
MAX_BODY_LIMIT = 64 * 1024 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
_DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|kib|m|mb|mib)?$", re.IGNORECASE)

WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace", "-W", help="Workspace name or id (needed when a webhook name is in several)."
    ),
]
WebhookArg = Annotated[str, typer.Argument(help="Webhook id, or its name.")]


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")


# --- parsing ------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """``24h``, ``30m``, ``90s``, ``1h30m``, ``2d``, ``500ms`` or plain seconds; ``0`` = none."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        value = timedelta(seconds=int(raw))
    else:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise CliError(
                f"cannot read the duration {text!r}",
                hint="write it like 24h, 30m, 90s, 1h30m or 2d (0 for no grace period)",
                exit_code=2,
            )
        unit_seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        value = timedelta(seconds=sum(int(n) * unit_seconds[u] for n, u in parts))
    if value > MAX_GRACE:
        raise CliError("a grace period is at most 30 days", exit_code=2)
    return value


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64k`` or ``1mb``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise CliError(
            f"cannot read the size {text!r}", hint="write it like 65536, 64k or 1mb", exit_code=2
        )
    unit = (match.group(2) or "b").lower()
    size = int(match.group(1)) * (
        1024 if unit.startswith("k") else 1024 * 1024 if unit.startswith("m") else 1
    )
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise CliError(
            f"--max-body must be between 1 byte and {MAX_BODY_LIMIT // (1024 * 1024)}mb",
            exit_code=2,
        )
    return size


def check_rate_limit(value: int) -> int:
    if value < 1 or value > 1_000_000:
        raise CliError("--rate-limit is requests per minute, between 1 and 1000000", exit_code=2)
    return value


def check_idempotency_field(path: str) -> str:
    try:
        compile_path(path)
    except ValueError as exc:
        raise CliError(f"bad --idempotency-field {path!r}: {exc}", exit_code=2) from None
    return path


def check_header(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise CliError(f"{name!r} is not a valid HTTP header name", exit_code=2)
    return name


def read_mapping(path: str) -> Mapping:
    try:
        mapping = load_mapping_file(Path(path))
        compile_mapping(mapping)
    except MappingError as exc:
        raise CliError(
            f"{Path(path).name} is not a valid mapping:\n  " + "\n  ".join(exc.problems),
            hint="see docs/templates.md (`leadwire template show generic` prints an example)",
        ) from None
    return mapping


# --- views --------------------------------------------------------------------------


def webhook_url(webhook_id: uuid.UUID | str) -> str:
    return f"{load_settings().public_url.rstrip('/')}/webhooks/{webhook_id}"


def _entry_count(stored: Any) -> int:
    if isinstance(stored, dict):
        stored = stored.get("entries", [])
    return len(stored) if isinstance(stored, list) else 0


def view(row: dict[str, Any]) -> dict[str, Any]:
    """What list/show print about a webhook (never a secret)."""
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "workspace": row["workspace"],
        "name": row["name"],
        "url": webhook_url(row["id"]),
        "status": row["status"],
        "template": row["template"],
        "auth_mode": row["auth_mode"],
        "basic_username": row["basic_username"] if row["auth_mode"] == "basic" else None,
        "api_key_header": row["api_key_header"] if row["auth_mode"] == "api-key" else None,
        "verify_token": row["verify_token"],
        "has_secret": row["has_secret"],
        "previous_secret_valid_until": row["previous_secret_valid_until"],
        "rate_limit_per_minute": row["rate_limit_per_minute"],
        "max_body_bytes": row["max_body_bytes"],
        "idempotency_field": row["idempotency_field"],
        "mapping_entries": _entry_count(row["mapping"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _describe(w: dict[str, Any]) -> str:
    lines = [
        f"webhook {w['name']} ({w['id']}) in workspace {w['workspace']}",
        f"  url:          {w['url']}",
        f"  status:       {w['status']}",
        f"  template:     {w['template']}",
        f"  auth:         {w['auth_mode']}",
    ]
    if w.get("basic_username"):
        lines.append(f"  username:     {w['basic_username']}")
    if w.get("api_key_header"):
        lines.append(f"  key header:   {w['api_key_header']}")
    if w.get("verify_token"):
        lines.append(f"  verify token: {w['verify_token']}")
    if w.get("previous_secret_valid_until"):
        lines.append(
            f"  old secret valid until {w['previous_secret_valid_until']:%Y-%m-%d %H:%M:%S %Z}"
        )
    limit = w.get("rate_limit_per_minute")
    lines.append(f"  rate limit:   {f'{limit}/min' if limit else 'default'}")
    body = w.get("max_body_bytes")
    lines.append(f"  max body:     {f'{body} bytes' if body else 'default'}")
    lines.append(
        f"  idempotency:  {w.get('idempotency_field') or 'webhook-id / Idempotency-Key headers'}"
    )
    lines.append(
        f"  mapping:      {w['mapping_entries']} entries (`leadwire mapping show {w['id']}`)"
    )
    return "\n".join(lines)


def _secret_lines(data: dict[str, Any]) -> list[str]:
    if not data.get("secret"):
        return []
    mode = data["auth_mode"]
    label = {"basic": "password", "api-key": "api key"}.get(mode, "secret")
    lines = [f"  {label + ':':<13} {data['secret']}"]
    if mode == "api-key":
        lines.append(f"  send it as:   {data['api_key_header']}: <api key>")
    elif mode == "basic":
        lines.append(
            f"  send it as:   Authorization: Basic base64({data['basic_username']}:<password>)"
        )
    elif mode == "github":
        lines.append("  sign with:    X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>")
    elif mode == "standard":
        lines.append(
            "  sign with:    Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"
        )
    lines.append("  (shown once: store it now; `leadwire webhook rotate-secret` issues a new one)")
    return lines


# --- commands -----------------------------------------------------------------------


@webhook_app.command("create")
def create(
    workspace: Annotated[str, typer.Option("--workspace", "-W", help="Workspace name or id.")],
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
        try:
            tpl = get_template(template)
        except KeyError:
            raise CliError(
                f"no template named {template!r}",
                hint=f"valid: {', '.join(TEMPLATES)}",
                exit_code=2,
            ) from None
        mode = auth or tpl.auth_mode
        if mode not in AUTH_MODES:
            raise CliError(
                f"unknown auth mode {mode!r}", hint=f"valid: {', '.join(AUTH_MODES)}", exit_code=2
            )
        mapping = custom_mapping or tpl.mapping
        ws = await repo.get_workspace(conn, workspace)
        if secret is not None:
            problem = check_imported_secret(mode, secret)
            if problem:
                raise CliError(f"--secret: {problem}", exit_code=2)
            plain, stored, extra = secret, stored_form(mode, secret), {}
            if mode == "basic":
                extra = generate_secret("basic")[2]
        else:
            plain, stored, extra = generate_secret(mode)
        ident = uuid.uuid4()
        values: dict[str, Any] = {
            "id": ident,
            "workspace_id": ws["id"],
            "name": check_name("webhook", name),
            "template": tpl.name,
            "auth_mode": mode,
            "secret": stored or None,
            "basic_username": extra.get("basic_username"),
            "api_key_header": check_header(api_key_header),
            "rate_limit_per_minute": check_rate_limit(rate_limit)
            if rate_limit is not None
            else None,
            "max_body_bytes": parse_size(max_body) if max_body is not None else None,
            "idempotency_field": (
                check_idempotency_field(idempotency_field)
                if idempotency_field
                else (None if idempotency_field == "" else tpl.idempotency_field)
            ),
            "mapping": mapping.to_stored(),
            "verify_token": generate_verify_token() if tpl.name == "facebook" else None,
        }
        row = await repo.create_webhook(conn, values)
        out = view(row)
        out["secret"] = plain or None
        return out

    data = run_db(work, as_json=as_json)
    emit(
        _created_doc(data),
        as_json=as_json,
        text=lambda d: "\n".join([f"created {_describe(data)}", *_secret_lines(d)]),
    )


def _created_doc(data: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "workspace_id",
        "workspace",
        "name",
        "url",
        "status",
        "template",
        "auth_mode",
        "secret",
        "basic_username",
        "api_key_header",
        "verify_token",
        "rate_limit_per_minute",
        "max_body_bytes",
        "idempotency_field",
        "mapping_entries",
        "created_at",
    )
    return {k: data.get(k) for k in keys}


@webhook_app.command("list")
def list_(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-W", help="Only this workspace.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List webhooks (all workspaces, or one)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws_id = (await repo.get_workspace(conn, workspace))["id"] if workspace else None
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
def show(webhook: WebhookArg, workspace: WorkspaceOpt = None, as_json: JsonFlag = False) -> None:
    """Show one webhook (its secret is never shown again)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return view(await repo.get_webhook(conn, webhook, workspace))

    emit(run_db(work, as_json=as_json), as_json=as_json, text=_describe)


@webhook_app.command("update")
def update(
    webhook: WebhookArg,
    workspace: WorkspaceOpt = None,
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

    emit(run_db(work, as_json=as_json), as_json=as_json, text=lambda w: f"updated {_describe(w)}")


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
def disable(webhook: WebhookArg, workspace: WorkspaceOpt = None, as_json: JsonFlag = False) -> None:
    """Stop accepting requests on a webhook (the gateway refuses them)."""
    _set_status(webhook, workspace, "disabled", as_json)


@webhook_app.command("enable")
def enable(webhook: WebhookArg, workspace: WorkspaceOpt = None, as_json: JsonFlag = False) -> None:
    """Accept requests on a webhook again."""
    _set_status(webhook, workspace, "active", as_json)


@webhook_app.command("rotate-secret")
def rotate_secret(
    webhook: WebhookArg,
    workspace: WorkspaceOpt = None,
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
        if secret is not None:
            problem = check_imported_secret(mode, secret)
            if problem:
                raise CliError(f"--secret: {problem}", exit_code=2)
            plain, stored = secret, stored_form(mode, secret)
        else:
            plain, stored, _ = generate_secret(mode)
        # basic keeps its username: during the grace period the old password still works.
        extra = {} if row["basic_username"] or mode != "basic" else generate_secret("basic")[2]
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
        return "\n".join(head + _secret_lines(d))

    data = run_db(work, as_json=as_json)
    emit(data, as_json=as_json, text=text)
