"""The management API's bodies: what each route reads and answers (the source of its
OpenAPI document, see :mod:`shared.openapi`).

Request models refuse unknown fields and bound every string, number and list, so a bad
request is a 400 naming the field, never a 500. Limits are the admin's
(:mod:`services.api.checks`), so the API and the CLI accept the same values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.api import checks
from shared.events import FieldError
from shared.mapping import Mapping
from shared.secrets import AUTH_MODES
from shared.templates import TEMPLATES

if TYPE_CHECKING:
    TemplateName = str
    AuthMode = str
else:  # one of the names, as an enum in the document
    TemplateName = Literal[tuple(TEMPLATES)]
    AuthMode = Literal[AUTH_MODES]
Name = Annotated[str, StringConstraints(min_length=1, max_length=checks.MAX_NAME)]
HeaderName = Annotated[str, StringConstraints(pattern=checks.HEADER_NAME)]
ConditionField = Annotated[str, StringConstraints(pattern=checks.CONDITION_FIELD)]
ConditionValue = Annotated[
    str, StringConstraints(min_length=1, max_length=checks.MAX_CONDITION_VALUE)
]
Status = Literal["active", "disabled"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(Answer):
    """Every refusal: the gateway's error shape."""

    success: Literal[False] = False
    errors: list[FieldError]


# --- who is asking ------------------------------------------------------------------


class Whoami(Answer):
    key_id: uuid.UUID
    workspace_id: uuid.UUID | None = Field(description="null: an operator key (every workspace)")
    scope: Literal["read", "manage"]


# --- workspaces ---------------------------------------------------------------------


class WorkspaceCreate(Request):
    name: Name
    default_region: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] = "US"


class Workspace(Answer):
    id: uuid.UUID
    name: str
    default_region: str
    status: Status
    suppressed_mode: Literal["reject", "flag"] = "reject"
    created_at: datetime
    updated_at: datetime
    webhooks: int | None = None
    boards: int | None = None
    rules: int | None = None


class WorkspaceList(Answer):
    items: list[Workspace]


# --- webhooks -----------------------------------------------------------------------


class WebhookCreate(Request):
    name: Name
    template: TemplateName = "generic"
    auth_mode: AuthMode | None = Field(None, description="default: the template's")
    secret: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="use this secret instead of a generated one (signed/credential modes)"
    )
    rate_limit_per_minute: int | None = Field(
        None, ge=1, le=checks.MAX_RATE_LIMIT, description="default: the gateway's"
    )
    max_body_bytes: int | None = Field(
        None, ge=1, le=checks.MAX_BODY_LIMIT, description="default: the gateway's"
    )
    idempotency_field: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="body path of the vendor's lead id; null: the template's; '': none"
    )
    api_key_header: HeaderName = "X-API-Key"
    mapping: Mapping | None = Field(None, description="default: the template's mapping")


class WebhookUpdate(Request):
    """Only the fields given change. A limit of null: the gateway's default."""

    name: Name | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=checks.MAX_RATE_LIMIT)
    max_body_bytes: int | None = Field(None, ge=1, le=checks.MAX_BODY_LIMIT)
    idempotency_field: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="null or '': none"
    )
    api_key_header: HeaderName | None = None


class Webhook(Answer):
    id: uuid.UUID
    workspace_id: uuid.UUID
    workspace: str
    name: str
    url: str = Field(description="where the vendor posts leads")
    status: Status
    template: str
    auth_mode: str
    basic_username: str | None
    api_key_header: str | None
    verify_token: str | None
    has_secret: bool
    previous_secret_valid_until: datetime | None
    rate_limit_per_minute: int | None
    max_body_bytes: int | None
    idempotency_field: str | None
    mapping_entries: int
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    secret: str | None = Field(description="shown this once; null for auth mode none")


class WebhookList(Answer):
    items: list[Webhook]


class SecretRotation(Request):
    grace_seconds: int = Field(
        86400,
        ge=0,
        le=int(checks.MAX_GRACE.total_seconds()),
        description="how long the old secret stays valid (0: not at all)",
    )
    secret: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class SecretRotated(Answer):
    id: uuid.UUID
    workspace: str
    name: str
    url: str
    auth_mode: str
    secret: str = Field(description="shown this once")
    basic_username: str | None
    api_key_header: str | None
    grace_seconds: float
    previous_secret_valid_until: datetime | None
    signed: bool


# --- mappings and templates ---------------------------------------------------------


class MappingSet(Request):
    """A mapping, or the name of a template whose mapping to use (one of them)."""

    mapping: Mapping | None = None
    template: TemplateName | None = None


class WebhookMapping(Answer):
    webhook_id: uuid.UUID
    webhook: str
    workspace: str
    template: str | None = None
    mapping: Mapping


class MappingTest(Request):
    sample: dict[str, Any] = Field(description="a body as the vendor sends it")


class MappingTestResult(Answer):
    valid: bool
    lead: dict[str, Any]
    errors: list[FieldError]


class TemplateInfo(Answer):
    name: str
    description: str
    auth_mode: str
    idempotency_field: str | None
    content_type: str
    mapping: Mapping
    example_payload: dict[str, Any]
    reference: str | None
    notes: list[str]


class TemplateList(Answer):
    items: list[TemplateInfo]


# --- boards and rules ---------------------------------------------------------------


class BoardCreate(Request):
    name: Name


class Board(Answer):
    id: uuid.UUID
    workspace_id: uuid.UUID
    workspace: str | None = None
    name: str
    created_at: datetime
    rules: int | None = None


class BoardList(Answer):
    items: list[Board]


class Condition(BaseModel):
    """``eq``: one value; ``in``: one of several (1 to 100)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: ConditionField
    op: Literal["eq", "in"] = "eq"
    value: ConditionValue | Annotated[list[ConditionValue], Field(min_length=1, max_length=100)]


class RuleCreate(Request):
    board_id: uuid.UUID
    webhook_id: uuid.UUID | None = Field(None, description="only leads from this webhook")
    conditions: list[Condition] = Field(default_factory=list, max_length=50)
    priority: int = Field(100, ge=-checks.MAX_PRIORITY, le=checks.MAX_PRIORITY)


class Rule(Answer):
    id: uuid.UUID
    workspace_id: uuid.UUID
    workspace: str
    board_id: uuid.UUID
    board: str
    webhook_id: uuid.UUID | None
    webhook: str | None
    conditions: list[Condition]
    priority: int
    created_at: datetime


class RuleList(Answer):
    items: list[Rule]


# --- API keys -----------------------------------------------------------------------


class ApiKeyCreate(Request):
    scope: Literal["read", "manage"] = "read"
    name: Annotated[str, StringConstraints(max_length=checks.MAX_NAME)] = ""
    expires_in_seconds: int | None = Field(
        None,
        ge=1,
        le=int(checks.MAX_KEY_LIFETIME.total_seconds()),
        description="null: the key does not expire",
    )


class ApiKey(Answer):
    id: uuid.UUID
    workspace_id: uuid.UUID | None
    workspace: str | None
    operator: bool
    name: str
    scope: Literal["read", "manage"]
    key_hint: str = Field(description="its first 8 and last 4 characters")
    state: Literal["active", "revoked", "expired"]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="shown this once: send it as Authorization: Bearer <key>")


class ApiKeyList(Answer):
    items: list[ApiKey]
