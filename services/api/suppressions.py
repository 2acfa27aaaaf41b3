"""The management API's suppression list (do not contact) and a workspace's suppressed
mode, through :mod:`services.processor.admin` (the operations ``leadwire suppress`` and
``leadwire workspace update --suppressed`` use). Values are normalized with the
workspace's region and stored as sha256 digests; no answer ever holds a value."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.api import admin
from services.api.handlers import Context, Repository
from services.api.models import Answer, Workspace
from services.api.pipeline import connection
from services.processor import admin as processor

Value = Annotated[str, StringConstraints(min_length=1, max_length=320)]
MAX_ENTRIES = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuppressionEntries(_Body):
    """Phones and emails (one or more of each, 1,000 in all at most)."""

    phones: list[Value] = Field(default_factory=list, max_length=MAX_ENTRIES)
    emails: list[Value] = Field(default_factory=list, max_length=MAX_ENTRIES)

    @model_validator(mode="after")
    def _some(self) -> SuppressionEntries:
        if not self.phones and not self.emails:
            raise ValueError("give at least one phone or email")
        if len(self.phones) + len(self.emails) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} entries in one request")
        return self

    def rows(self) -> list[tuple[str, str]]:
        return [("phone", p) for p in self.phones] + [("email", e) for e in self.emails]


class SuppressionQuery(_Body):
    kind: Literal["phone", "email"] | None = None
    value: Value | None = Field(None, description="with kind: is this one on the list?")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class SuppressionEntry(Answer):
    kind: Literal["phone", "email"]
    sha256: str = Field(description="sha256 of the normalized value, hex")
    source: str
    created_at: datetime


class SuppressionList(Answer):
    total: int
    items: list[SuppressionEntry]


class SuppressionAdded(Answer):
    read: int
    added: int
    already: int
    invalid: int
    errors: list[dict[str, Any]] = Field(description="refused entries: line, field, code")


class SuppressionRemoved(Answer):
    removed: int


class WorkspaceUpdate(_Body):
    suppressed_mode: Literal["reject", "flag"] = Field(
        description="a lead on the suppression list: rejected as suppressed, or processed "
        "with the suppressed flag and never sent an SMS"
    )


async def list_suppressions(
    workspace_id: uuid.UUID, query: SuppressionQuery, *, ctx: Context
) -> SuppressionList:
    """The suppression list's entries, newest first (or whether one value is on it)"""
    if (query.kind is None) != (query.value is None):
        raise admin.Invalid("give kind and value together", field="value")
    async with connection(ctx) as conn:
        found = await processor.list_suppressions(
            conn,
            workspace_id,
            kind=query.kind,
            value=query.value,
            limit=query.limit,
            offset=query.offset,
        )
    return SuppressionList.model_validate(found)


async def add_suppressions(
    workspace_id: uuid.UUID, body: SuppressionEntries, *, ctx: Context
) -> SuppressionAdded:
    """Put phones and emails on the suppression list (one already on it is counted)"""
    async with connection(ctx) as conn:
        result = await processor.suppress(conn, workspace_id, body.rows(), source="api")
    return SuppressionAdded.model_validate(result.as_dict())


async def remove_suppressions(
    workspace_id: uuid.UUID, body: SuppressionEntries, *, ctx: Context
) -> SuppressionRemoved:
    """Take phones and emails off the suppression list"""
    async with connection(ctx) as conn:
        removed = await processor.unsuppress(conn, workspace_id, body.rows())
    return SuppressionRemoved(removed=removed)


async def update_workspace(
    workspace_id: uuid.UUID, body: WorkspaceUpdate, *, repo: Repository, ctx: Context
) -> Workspace:
    """Change a workspace's settings: what a suppressed lead becomes"""
    async with connection(ctx) as conn:
        await processor.set_suppressed_mode(conn, workspace_id, body.suppressed_mode)
    return Workspace.model_validate(await admin.get_workspace(repo, workspace_id))
