"""SQL the archive commands need: a webhook's current configuration."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    workspace_name: str
    status: str
    workspace_status: str
    mapping: Any
    default_region: str


_SELECT = """
    SELECT w.id, w.workspace_id, w.name, w.status, w.mapping,
           ws.name AS workspace_name, ws.status AS workspace_status, ws.default_region
      FROM webhooks w JOIN workspaces ws ON ws.id = w.workspace_id
"""


class AmbiguousWebhook(Exception):
    """A webhook name used in more than one workspace."""

    def __init__(self, name: str, workspaces: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.workspaces = workspaces


async def webhook_config(
    conn: asyncpg.Connection, webhook: str, *, workspace: str | None = None
) -> WebhookConfig | None:
    """A webhook by id, or by name (within ``workspace`` — an id or a name — if given)."""
    try:
        webhook_id: uuid.UUID | None = uuid.UUID(webhook)
    except ValueError:
        webhook_id = None
    if webhook_id is not None:
        row = await conn.fetchrow(_SELECT + " WHERE w.id = $1", webhook_id)
        return _config(row) if row else None
    if workspace is not None:
        rows = await conn.fetch(
            _SELECT + " WHERE w.name = $1 AND (ws.id::text = $2 OR ws.name = $2)",
            webhook,
            workspace,
        )
    else:
        rows = await conn.fetch(_SELECT + " WHERE w.name = $1", webhook)
    if len(rows) > 1:
        raise AmbiguousWebhook(webhook, sorted(r["workspace_name"] for r in rows))
    return _config(rows[0]) if rows else None


def _config(row: asyncpg.Record) -> WebhookConfig:
    return WebhookConfig(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        workspace_name=row["workspace_name"],
        status=row["status"],
        workspace_status=row["workspace_status"],
        mapping=row["mapping"],
        default_region=row["default_region"],
    )
