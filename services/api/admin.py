"""What a person asks of leadwire's management domain: workspaces, webhooks, mappings,
boards, board rules and API keys. Two front-ends call the same functions: the CLI
(``leadwire workspace|webhook|mapping|board|rule|apikey``, straight on Postgres, for
operators) and the management API (:mod:`services.api.handlers`, with an API key). This is
the one module of the management API that the CLI imports.

Each operation takes a :class:`Repository` (``PostgresRepository(conn)`` in the CLI, the
API's pool-backed one, or the fake in unit tests) and values already parsed at the edge;
it checks them (:mod:`services.api.checks`) and refuses with an
:class:`~services.api.errors.AdminError` (a message, a field, a code and a hint). Results
are plain dicts (uuid/datetime values). A webhook's secret is returned once, by the
operation that issued it; a key's, likewise; neither is ever read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from services.api import checks, deadletters, webhook_options
from services.api.checks import (
    MAX_GRACE,
    basic_username,
    check_auth_mode,
    check_condition,
    check_header,
    check_idempotency_field,
    check_name,
    check_priority,
    check_rate_limit,
    check_region,
    check_size,
    issue_secret,
    template_named,
)
from services.api.errors import AdminError, Conflict, Forbidden, Invalid, NotFound
from services.api.keys import create_api_key, get_api_key, list_api_keys, revoke_api_key
from services.api.repository import PostgresRepository, Repository, Row
from shared.mapping import Mapping, MappingError, compile_stored, map_and_validate, parse_form
from shared.secrets import HMAC_MODES, generate_verify_token
from shared.templates import TEMPLATES, Template

# Also the admin's: the checks (``admin.checks``: the CLI checks its flags with them), the
# errors, the repository, the API keys' operations and the dead letters'
# (``admin.deadletters``).
__all__ = [
    "TEMPLATES",
    "AdminError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PostgresRepository",
    "Repository",
    "checks",
    "create_api_key",
    "deadletters",
    "get_api_key",
    "list_api_keys",
    "revoke_api_key",
    "webhook_options",
]


def as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None


# --- workspaces ---------------------------------------------------------------------


async def create_workspace(repo: Repository, name: str, region: str) -> Row:
    return await repo.insert_workspace(
        uuid.uuid4(), check_name("workspace", name), check_region(region)
    )


async def list_workspaces(repo: Repository, only: uuid.UUID | None = None) -> list[Row]:
    return await repo.workspaces(only)


def _no_workspace(ref: str) -> NotFound:
    return NotFound(
        f"no workspace named {ref!r}",
        field="workspace",
        hint="see `leadwire workspace list`, or create it with `leadwire workspace create`",
    )


async def find_workspace(repo: Repository, ref: str) -> Row:
    """A workspace by name or id (the CLI's way to name one)."""
    ident = as_uuid(ref)
    row = await repo.workspace(ident) if ident is not None else None
    if row is None:
        row = await repo.workspace_named(ref)
    if row is None:
        raise _no_workspace(ref)
    return row


async def workspace_filter(repo: Repository, ref: str | None) -> uuid.UUID | None:
    """The id of the workspace a listing is narrowed to (``--workspace``), None for all."""
    return (await find_workspace(repo, ref))["id"] if ref else None


async def get_workspace(repo: Repository, workspace_id: uuid.UUID) -> Row:
    """A workspace by id, with its counts of webhooks, boards and rules."""
    row = await repo.workspace(workspace_id)
    if row is None:
        raise NotFound("no such workspace", field="workspace_id")
    return {**row, **await repo.workspace_counts(workspace_id)}


async def set_workspace_status(repo: Repository, workspace_id: uuid.UUID, status: str) -> Row:
    row = await repo.set_workspace_status(workspace_id, status)
    if row is None:
        raise NotFound("no such workspace", field="workspace_id")
    return row


# --- webhooks -----------------------------------------------------------------------


def _entry_count(stored: Any) -> int:
    if isinstance(stored, dict):
        stored = stored.get("entries", [])
    return len(stored) if isinstance(stored, list) else 0


def webhook_url(public_url: str, webhook_id: uuid.UUID | str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/{webhook_id}"


def webhook_view(row: Row, public_url: str) -> Row:
    """What is shown of a webhook (never a secret)."""
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "workspace": row["workspace"],
        "name": row["name"],
        "url": webhook_url(public_url, row["id"]),
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
        **webhook_options.view(row),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@dataclass(frozen=True)
class WebhookSpec:
    """A new webhook. ``None`` takes the template's auth mode, idempotency field or
    mapping; an ``idempotency_field`` of ``""`` means none."""

    name: str
    template: str = "generic"
    auth_mode: str | None = None
    secret: str | None = None  # imported instead of a generated one
    rate_limit_per_minute: int | None = None
    max_body_bytes: int | None = None
    idempotency_field: str | None = None
    api_key_header: str = "X-API-Key"
    mapping: Mapping | None = None
    # Lead buying (webhook_options): column values already checked.
    options: Row | None = None


def _idempotency_field(given: str | None, template: Template) -> str | None:
    if given:
        return check_idempotency_field(given)
    return None if given == "" else template.idempotency_field


async def create_webhook(
    repo: Repository, workspace_id: uuid.UUID, spec: WebhookSpec, *, public_url: str
) -> Row:
    """Create a webhook: its view, with ``secret`` (shown this once; None for ``none``)."""
    tpl = template_named(spec.template)
    mode = check_auth_mode(spec.auth_mode or tpl.auth_mode)
    plain, stored = issue_secret(mode, spec.secret)
    values: Row = {
        "id": uuid.uuid4(),
        "workspace_id": workspace_id,
        "name": check_name("webhook", spec.name),
        "template": tpl.name,
        "auth_mode": mode,
        "secret": stored or None,
        "basic_username": basic_username() if mode == "basic" else None,
        "api_key_header": check_header(spec.api_key_header),
        "rate_limit_per_minute": (
            check_rate_limit(spec.rate_limit_per_minute)
            if spec.rate_limit_per_minute is not None
            else None
        ),
        "max_body_bytes": (
            check_size(spec.max_body_bytes) if spec.max_body_bytes is not None else None
        ),
        "idempotency_field": _idempotency_field(spec.idempotency_field, tpl),
        "mapping": (spec.mapping or tpl.mapping).to_stored(),
        "verify_token": generate_verify_token() if tpl.name == "facebook" else None,
        **(spec.options or {}),
    }
    out = webhook_view(await repo.insert_webhook(values), public_url)
    out["secret"] = plain or None
    return out


def _no_webhook(what: str, hint: str = "see `leadwire webhook list`") -> NotFound:
    return NotFound(f"no webhook {what}", field="webhook_id", hint=hint)


async def find_webhook(repo: Repository, ref: str, workspace: str | None = None) -> Row:
    """A webhook by id, or by name (within ``workspace`` when given, else unique overall):
    the CLI's way to name one."""
    ident = as_uuid(ref)
    if ident is not None:
        row = await repo.webhook(ident)
        if row is not None:
            return row
    ws = await find_workspace(repo, workspace) if workspace is not None else None
    rows = await repo.webhooks_named(ref, ws["id"] if ws else None)
    if not rows:
        where = f" in workspace {ws['name']!r}" if ws else ""
        raise _no_webhook(
            f"named {ref!r}{where}",
            "see `leadwire webhook list` (a webhook is named by its name or id)",
        )
    if len(rows) > 1:
        names = ", ".join(repr(r["workspace"]) for r in rows)
        raise AdminError(
            f"{len(rows)} webhooks are named {ref!r} (in workspaces {names})",
            code="ambiguous",
            hint="add --workspace W, or use the webhook's id",
        )
    return rows[0]


async def get_webhook(
    repo: Repository, webhook_id: uuid.UUID, workspace_id: uuid.UUID | None = None
) -> Row:
    """A webhook by id; one of another workspace than ``workspace_id`` is not found."""
    row = await repo.webhook(webhook_id)
    if row is None or (workspace_id is not None and row["workspace_id"] != workspace_id):
        raise _no_webhook(f"with id {webhook_id}")
    return row


async def list_webhooks(repo: Repository, workspace_id: uuid.UUID | None) -> list[Row]:
    return await repo.webhooks(workspace_id)


async def update_webhook(repo: Repository, row: Row, changes: Row) -> Row:
    """Change a webhook's name, limits, idempotency field or api-key header (a value of
    None for a limit: the gateway's default). ``changes`` holds checked column values."""
    if not changes:
        raise Invalid(
            "nothing to change",
            hint="pass --rename, --rate-limit, --max-body, --idempotency-field, "
            "--api-key-header or a lead-buying option (--require, --allow, ...)",
        )
    if "name" in changes:
        changes = {**changes, "name": check_name("webhook", changes["name"])}
    return await repo.update_webhook(row["id"], changes)


async def set_webhook_status(repo: Repository, row: Row, status: str) -> Row:
    return await repo.update_webhook(row["id"], {"status": status})


async def rotate_secret(
    repo: Repository, row: Row, *, grace: timedelta, secret: str | None, public_url: str
) -> Row:
    """Issue a new secret; the old one keeps working for ``grace``. The new secret is in
    the answer, once."""
    mode = row["auth_mode"]
    if mode == "none":
        raise Conflict(
            f"webhook {row['name']!r} has auth mode none: there is no secret to rotate",
            code="no_secret",
            field="auth_mode",
            hint="its URL is the credential; create a new webhook to change it",
        )
    if grace > MAX_GRACE:
        raise Invalid("a grace period is at most 30 days", field="grace_seconds")
    plain, stored = issue_secret(mode, secret)
    # basic keeps its username: during the grace period the old password still works.
    username = basic_username() if mode == "basic" and not row["basic_username"] else None
    out = webhook_view(
        await repo.rotate_secret(row["id"], stored=stored, grace=grace, basic_username=username),
        public_url,
    )
    return {
        "id": out["id"],
        "workspace": out["workspace"],
        "name": out["name"],
        "url": out["url"],
        "auth_mode": mode,
        "secret": plain,
        "basic_username": out["basic_username"],
        "api_key_header": out["api_key_header"],
        "grace_seconds": grace.total_seconds(),
        "previous_secret_valid_until": out["previous_secret_valid_until"],
        "signed": mode in HMAC_MODES,
    }


# --- mappings and templates ---------------------------------------------------------


def entries_doc(mapping: Mapping) -> Row:
    return {
        "entries": [e.model_dump(exclude_none=True) for e in mapping.entries],
        "keep_unmapped": mapping.keep_unmapped,
    }


def _about(row: Row) -> Row:
    return {"webhook_id": row["id"], "webhook": row["name"], "workspace": row["workspace"]}


async def set_mapping(repo: Repository, row: Row, mapping: Mapping) -> Row:
    """Store a checked mapping on a webhook (gateways pick it up at once)."""
    await repo.update_webhook(row["id"], {"mapping": mapping.to_stored()})
    return {**_about(row), "mapping": entries_doc(mapping)}


def stored_mapping(row: Row) -> Mapping:
    try:
        return compile_stored(row["mapping"]).mapping
    except MappingError as exc:
        raise AdminError(
            "the stored mapping is invalid: " + "; ".join(exc.problems),
            code="invalid_stored_mapping",
            hint="replace it with `leadwire mapping set`",
        ) from None


def show_mapping(row: Row) -> Row:
    return {**_about(row), "template": row["template"], "mapping": entries_doc(stored_mapping(row))}


def read_sample(body: bytes) -> Any:
    """A sample body as a vendor sends it: JSON, else form fields."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return parse_form(body)
        except ValueError as exc:
            raise AdminError(f"cannot read the sample body: {exc}", field="body") from None


def test_mapping(row: Row, sample: Any) -> Row:
    """Map a sample body with the webhook's mapping: the lead and any field errors."""
    lead, errors = map_and_validate(
        sample, compile_stored(row["mapping"]), default_region=row["default_region"]
    )
    return {
        "valid": not errors,
        "lead": lead.model_dump(mode="json"),
        "errors": [e.model_dump() for e in errors],
    }


def template_doc(t: Template) -> Row:
    return {
        "name": t.name,
        "description": t.description,
        "auth_mode": t.auth_mode,
        "idempotency_field": t.idempotency_field,
        "content_type": t.content_type,
        "mapping": entries_doc(t.mapping),
        "example_payload": t.example_payload,
        "reference": t.reference or None,
        "notes": list(t.notes),
    }


# --- boards and rules ---------------------------------------------------------------


async def create_board(repo: Repository, workspace: Row, name: str) -> Row:
    board = await repo.insert_board(uuid.uuid4(), workspace["id"], check_name("board", name))
    return {**board, "workspace": workspace["name"]}


async def list_boards(repo: Repository, workspace_id: uuid.UUID | None) -> list[Row]:
    return await repo.boards(workspace_id)


async def find_board(repo: Repository, workspace_id: uuid.UUID, ref: str) -> Row:
    """A board of a workspace by id or name."""
    ident = as_uuid(ref)
    row = await repo.board(workspace_id, ident) if ident is not None else None
    if row is None:
        row = await repo.board_named(workspace_id, ref)
    if row is None:
        raise NotFound(
            f"no board named {ref!r} in this workspace",
            field="board_id",
            hint="see `leadwire board list --workspace ...`, or create it with "
            "`leadwire board create`",
        )
    return row


async def add_rule(
    repo: Repository,
    workspace_id: uuid.UUID,
    *,
    board_id: uuid.UUID,
    webhook_id: uuid.UUID | None,
    conditions: list[Row],
    priority: int,
) -> Row:
    """Add a board rule; its board and webhook (if any) must be of the workspace."""
    checked = [check_condition(c["field"], c["op"], c["value"]) for c in conditions]
    check_priority(priority)
    await find_board(repo, workspace_id, str(board_id))
    if webhook_id is not None:
        await get_webhook(repo, webhook_id, workspace_id)
    return await repo.insert_rule(
        {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "board_id": board_id,
            "webhook_id": webhook_id,
            "conditions": checked,
            "priority": priority,
        }
    )


async def list_rules(repo: Repository, workspace_id: uuid.UUID | None) -> list[Row]:
    return await repo.rules(workspace_id)


async def remove_rule(
    repo: Repository, rule_id: uuid.UUID, workspace_id: uuid.UUID | None = None
) -> Row:
    row = await repo.rule(rule_id)
    if row is None or (workspace_id is not None and row["workspace_id"] != workspace_id):
        raise NotFound(
            f"no rule with id {rule_id}", field="rule_id", hint="see `leadwire rule list`"
        )
    await repo.delete_rule(rule_id)
    return row
