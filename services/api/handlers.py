"""The management API's handlers for the management tables: workspaces, webhooks,
mappings, templates, boards, rules and API keys.

Plain ``async def`` functions: path ids, the JSON ``body`` and the ``query`` as typed
arguments, dependencies keyword-only (``repo``, ``ctx``, ``principal``). Each calls the
admin (:mod:`services.api.admin`), which the CLI calls too, and answers a model.
:mod:`services.api.routes` binds them to their paths, and checks first that the key sees
the path's workspace (404 otherwise, as for a workspace that does not exist) and may do
what the route does (403); a handler looks its objects up *within* that workspace, so
another workspace's ids answer 404 too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from services.api import admin
from services.api.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    Board,
    BoardCreate,
    BoardList,
    MappingSet,
    MappingTest,
    MappingTestResult,
    Rule,
    RuleCreate,
    RuleList,
    SecretRotated,
    SecretRotation,
    TemplateInfo,
    TemplateList,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookMapping,
    WebhookUpdate,
    Whoami,
    Workspace,
    WorkspaceCreate,
    WorkspaceList,
)
from services.api.settings import ApiSettings
from shared.apikeys import Principal

Repository = admin.Repository


@dataclass(frozen=True)
class Context:
    """What handlers need besides the repository."""

    settings: ApiSettings
    # The other services' admin operations take a connection (None in unit tests).
    pool: asyncpg.Pool | None = None

    @property
    def public_url(self) -> str:
        return self.settings.public_url


async def whoami(*, principal: Principal) -> Whoami:
    """The key's workspace (none for an operator key) and scope"""
    return Whoami(
        key_id=principal.key_id, workspace_id=principal.workspace_id, scope=principal.scope
    )


# --- workspaces ---------------------------------------------------------------------


async def list_workspaces(*, repo: Repository, principal: Principal) -> WorkspaceList:
    """The workspaces the key sees (its own; every one for an operator key)"""
    rows = await admin.list_workspaces(repo, principal.workspace_id)
    return WorkspaceList(items=[Workspace.model_validate(r) for r in rows])


async def create_workspace(body: WorkspaceCreate, *, repo: Repository) -> Workspace:
    """Create a workspace (an operator key)"""
    row = await admin.create_workspace(repo, body.name, body.default_region)
    return Workspace.model_validate(row)


async def get_workspace(workspace_id: uuid.UUID, *, repo: Repository) -> Workspace:
    """A workspace, with its counts of webhooks, boards and rules"""
    return Workspace.model_validate(await admin.get_workspace(repo, workspace_id))


async def disable_workspace(workspace_id: uuid.UUID, *, repo: Repository) -> Workspace:
    """Stop accepting leads for every webhook of a workspace (an operator key)

    Its keys stop working too; the operator's keep working."""
    return Workspace.model_validate(
        await admin.set_workspace_status(repo, workspace_id, "disabled")
    )


async def enable_workspace(workspace_id: uuid.UUID, *, repo: Repository) -> Workspace:
    """Accept leads for a workspace again (an operator key)"""
    return Workspace.model_validate(await admin.set_workspace_status(repo, workspace_id, "active"))


# --- webhooks -----------------------------------------------------------------------


def _webhook(row: dict[str, Any], ctx: Context) -> Webhook:
    return Webhook.model_validate(admin.webhook_view(row, ctx.public_url))


async def list_webhooks(workspace_id: uuid.UUID, *, repo: Repository, ctx: Context) -> WebhookList:
    """The workspace's webhooks"""
    rows = await admin.list_webhooks(repo, workspace_id)
    return WebhookList(items=[_webhook(r, ctx) for r in rows])


async def create_webhook(
    workspace_id: uuid.UUID, body: WebhookCreate, *, repo: Repository, ctx: Context
) -> WebhookCreated:
    """Create a webhook: its URL, and for signed and credential modes its secret (once)

    The template gives the auth mode, idempotency field and mapping unless the body
    says otherwise."""
    spec = admin.WebhookSpec(
        name=body.name,
        template=body.template,
        auth_mode=body.auth_mode,
        secret=body.secret,
        rate_limit_per_minute=body.rate_limit_per_minute,
        max_body_bytes=body.max_body_bytes,
        idempotency_field=body.idempotency_field,
        api_key_header=body.api_key_header,
        mapping=admin.checks.check_mapping(body.mapping) if body.mapping else None,
    )
    created = await admin.create_webhook(repo, workspace_id, spec, public_url=ctx.public_url)
    return WebhookCreated.model_validate(created)


async def get_webhook(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Repository, ctx: Context
) -> Webhook:
    """A webhook (its secret is never shown again)"""
    return _webhook(await admin.get_webhook(repo, webhook_id, workspace_id), ctx)


def _changes(body: WebhookUpdate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise admin.Invalid("a webhook needs a name", field="name")
        changes["name"] = body.name
    if "rate_limit_per_minute" in given:
        changes["rate_limit_per_minute"] = body.rate_limit_per_minute
    if "max_body_bytes" in given:
        changes["max_body_bytes"] = body.max_body_bytes
    if "idempotency_field" in given:
        path = body.idempotency_field
        changes["idempotency_field"] = admin.checks.check_idempotency_field(path) if path else None
    if "api_key_header" in given:
        if body.api_key_header is None:
            raise admin.Invalid("api_key_header cannot be null", field="api_key_header")
        changes["api_key_header"] = body.api_key_header
    return changes


async def update_webhook(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    *,
    repo: Repository,
    ctx: Context,
) -> Webhook:
    """Change a webhook's name, limits, idempotency field or api-key header"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    return _webhook(await admin.update_webhook(repo, row, _changes(body)), ctx)


async def disable_webhook(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Repository, ctx: Context
) -> Webhook:
    """Stop accepting requests on a webhook"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    return _webhook(await admin.set_webhook_status(repo, row, "disabled"), ctx)


async def enable_webhook(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Repository, ctx: Context
) -> Webhook:
    """Accept requests on a webhook again"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    return _webhook(await admin.set_webhook_status(repo, row, "active"), ctx)


async def rotate_secret(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: SecretRotation,
    *,
    repo: Repository,
    ctx: Context,
) -> SecretRotated:
    """Issue a new secret (shown once); the old one works for the grace period"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    rotated = await admin.rotate_secret(
        repo,
        row,
        grace=timedelta(seconds=body.grace_seconds),
        secret=body.secret,
        public_url=ctx.public_url,
    )
    return SecretRotated.model_validate(rotated)


# --- mappings and templates ---------------------------------------------------------


async def get_mapping(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Repository
) -> WebhookMapping:
    """A webhook's mapping"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    return WebhookMapping.model_validate(admin.show_mapping(row))


async def set_mapping(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, body: MappingSet, *, repo: Repository
) -> WebhookMapping:
    """Check a mapping and store it on a webhook (gateways use it at once)"""
    if (body.mapping is None) == (body.template is None):
        raise admin.Invalid("give a mapping or a template (one of them)", field="mapping")
    mapping = (
        admin.checks.check_mapping(body.mapping)
        if body.mapping is not None
        else admin.checks.template_named(str(body.template)).mapping
    )
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    stored = await admin.set_mapping(repo, row, mapping)
    return WebhookMapping.model_validate({**stored, "template": row["template"]})


async def test_mapping(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, body: MappingTest, *, repo: Repository
) -> MappingTestResult:
    """Map a sample body with a webhook's mapping: the lead and any field errors"""
    row = await admin.get_webhook(repo, webhook_id, workspace_id)
    return MappingTestResult.model_validate(admin.test_mapping(row, body.sample))


async def list_templates() -> TemplateList:
    """Vendor templates: a mapping plus auth defaults"""
    return TemplateList(
        items=[TemplateInfo.model_validate(admin.template_doc(t)) for t in admin.TEMPLATES.values()]
    )


async def get_template(name: str) -> TemplateInfo:
    """One vendor template"""
    template = admin.TEMPLATES.get(name)
    if template is None:
        raise admin.NotFound(f"no template named {name!r}", field="name")
    return TemplateInfo.model_validate(admin.template_doc(template))


# --- boards and rules ---------------------------------------------------------------


async def list_boards(workspace_id: uuid.UUID, *, repo: Repository) -> BoardList:
    """The workspace's boards"""
    rows = await admin.list_boards(repo, workspace_id)
    return BoardList(items=[Board.model_validate(r) for r in rows])


async def create_board(workspace_id: uuid.UUID, body: BoardCreate, *, repo: Repository) -> Board:
    """Create a board"""
    workspace = await admin.get_workspace(repo, workspace_id)
    return Board.model_validate(await admin.create_board(repo, workspace, body.name))


async def list_rules(workspace_id: uuid.UUID, *, repo: Repository) -> RuleList:
    """The workspace's board rules, in evaluation order"""
    rows = await admin.list_rules(repo, workspace_id)
    return RuleList(items=[Rule.model_validate(r) for r in rows])


async def create_rule(workspace_id: uuid.UUID, body: RuleCreate, *, repo: Repository) -> Rule:
    """Add a board rule (its board and webhook must be the workspace's)"""
    row = await admin.add_rule(
        repo,
        workspace_id,
        board_id=body.board_id,
        webhook_id=body.webhook_id,
        conditions=[c.model_dump() for c in body.conditions],
        priority=body.priority,
    )
    return Rule.model_validate(row)


async def delete_rule(workspace_id: uuid.UUID, rule_id: uuid.UUID, *, repo: Repository) -> Rule:
    """Remove a board rule"""
    return Rule.model_validate(await admin.remove_rule(repo, rule_id, workspace_id))


# --- API keys -----------------------------------------------------------------------


async def list_api_keys(workspace_id: uuid.UUID, *, repo: Repository) -> ApiKeyList:
    """The workspace's API keys (never the keys: how to recognise them)"""
    rows = await admin.list_api_keys(repo, workspace_id)
    return ApiKeyList(items=[ApiKey.model_validate(r) for r in rows])


async def create_api_key(
    workspace_id: uuid.UUID, body: ApiKeyCreate, *, repo: Repository, principal: Principal
) -> ApiKeyCreated:
    """Make an API key for the workspace (shown once)

    A workspace's manage key makes read keys; an operator key makes either."""
    if body.scope == "manage" and not principal.operator:
        raise admin.Forbidden(
            "a workspace key makes read keys only; ask an operator for a manage key",
            field="scope",
        )
    created = await admin.create_api_key(
        repo,
        workspace_id=workspace_id,
        scope=body.scope,
        name=body.name,
        expires_in=(
            timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
        ),
        created_by=str(principal.key_id),
    )
    return ApiKeyCreated.model_validate(created)


async def get_api_key(workspace_id: uuid.UUID, key_id: uuid.UUID, *, repo: Repository) -> ApiKey:
    """One API key"""
    return ApiKey.model_validate(await admin.get_api_key(repo, key_id, workspace_id))


async def revoke_api_key(workspace_id: uuid.UUID, key_id: uuid.UUID, *, repo: Repository) -> ApiKey:
    """Revoke an API key: refused everywhere within a second"""
    return ApiKey.model_validate(await admin.revoke_api_key(repo, key_id, workspace_id))
