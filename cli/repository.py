"""The admin CLI's SQL: workspaces, webhooks, boards and board rules.

Functions take an asyncpg connection and return plain dicts (JSON-ready apart from
uuid/datetime, which the output layer renders). Lookups accept a name or an id and raise
:class:`~cli.output.CliError` with a message that says what to do. Changes to workspaces and
webhooks reach the gateways through the ``leadwire_config`` NOTIFY trigger (001).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from cli.output import CliError

WORKSPACE_COLUMNS = "id, name, default_region, status, created_at, updated_at"
# A webhook with what the commands show of it, and its workspace's state and region.
WEBHOOK_SELECT = """SELECT w.id, w.workspace_id, ws.name AS workspace, w.name, w.template,
    w.auth_mode, w.status, w.rate_limit_per_minute, w.max_body_bytes, w.idempotency_field,
    w.basic_username, w.api_key_header, w.verify_token, w.mapping,
    (w.secret IS NOT NULL) AS has_secret,
    CASE WHEN w.secret_previous IS NOT NULL AND w.secret_previous_expires_at > now()
         THEN w.secret_previous_expires_at END AS previous_secret_valid_until,
    w.created_at, w.updated_at,
    ws.status AS workspace_status, ws.default_region
    FROM webhooks w JOIN workspaces ws ON ws.id = w.workspace_id"""


def as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None


# --- workspaces ---------------------------------------------------------------------


async def create_workspace(conn: asyncpg.Connection, name: str, region: str) -> dict[str, Any]:
    try:
        record = await conn.fetchrow(
            f"INSERT INTO workspaces (id, name, default_region) VALUES ($1, $2, $3) "
            f"RETURNING {WORKSPACE_COLUMNS}",
            uuid.uuid4(),
            name,
            region,
        )
    except asyncpg.UniqueViolationError:
        raise CliError(
            f"a workspace named {name!r} already exists",
            hint="pick another name, or see `leadwire workspace list`",
        ) from None
    assert record is not None
    return dict(record)


async def list_workspaces(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f"""SELECT {WORKSPACE_COLUMNS},
                   (SELECT count(*) FROM webhooks h WHERE h.workspace_id = workspaces.id) AS webhooks,
                   (SELECT count(*) FROM boards b WHERE b.workspace_id = workspaces.id) AS boards
            FROM workspaces ORDER BY name"""
    )
    return [dict(r) for r in records]


async def get_workspace(conn: asyncpg.Connection, ref: str) -> dict[str, Any]:
    """A workspace by name or id."""
    ident = as_uuid(ref)
    record = None
    if ident is not None:
        record = await conn.fetchrow(
            f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1", ident
        )
    if record is None:
        record = await conn.fetchrow(
            f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = $1", ref
        )
    if record is None:
        raise CliError(
            f"no workspace named {ref!r}",
            hint="see `leadwire workspace list`, or create it with `leadwire workspace create`",
        )
    return dict(record)


async def workspace_filter(conn: asyncpg.Connection, ref: str | None) -> uuid.UUID | None:
    """The id of the workspace a listing is narrowed to (``--workspace``), None for all."""
    return (await get_workspace(conn, ref))["id"] if ref else None


async def set_workspace_status(conn: asyncpg.Connection, ref: str, status: str) -> dict[str, Any]:
    ws = await get_workspace(conn, ref)
    record = await conn.fetchrow(
        f"UPDATE workspaces SET status = $2, updated_at = now() WHERE id = $1 "
        f"RETURNING {WORKSPACE_COLUMNS}",
        ws["id"],
        status,
    )
    assert record is not None
    return dict(record)


async def workspace_counts(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> dict[str, int]:
    record = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM webhooks WHERE workspace_id = $1) AS webhooks,
                  (SELECT count(*) FROM boards WHERE workspace_id = $1) AS boards,
                  (SELECT count(*) FROM board_rules WHERE workspace_id = $1) AS rules""",
        workspace_id,
    )
    assert record is not None
    return {k: int(v) for k, v in dict(record).items()}


# --- webhooks -----------------------------------------------------------------------


async def create_webhook(conn: asyncpg.Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Insert a webhook; ``values`` holds column names (id, workspace_id, name, ...)."""
    columns = list(values)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    try:
        await conn.execute(
            f"INSERT INTO webhooks ({', '.join(columns)}) VALUES ({placeholders})",
            *values.values(),
        )
    except asyncpg.UniqueViolationError:
        raise CliError(
            f"this workspace already has a webhook named {values['name']!r}",
            hint="pick another name, or see `leadwire webhook list --workspace ...`",
        ) from None
    return await get_webhook_by_id(conn, values["id"])


async def get_webhook_by_id(conn: asyncpg.Connection, ident: uuid.UUID) -> dict[str, Any]:
    record = await conn.fetchrow(
        f"{WEBHOOK_SELECT} WHERE w.id = $1",
        ident,
    )
    if record is None:
        raise CliError(f"no webhook with id {ident}", hint="see `leadwire webhook list`")
    return dict(record)


async def get_webhook(
    conn: asyncpg.Connection, ref: str, workspace: str | None = None
) -> dict[str, Any]:
    """A webhook by id, or by name (within ``workspace`` when given, else unique overall)."""
    ident = as_uuid(ref)
    if ident is not None:
        record = await conn.fetchrow(
            f"{WEBHOOK_SELECT} WHERE w.id = $1",
            ident,
        )
        if record is not None:
            return dict(record)
    if workspace is not None:
        ws = await get_workspace(conn, workspace)
        records = await conn.fetch(
            f"{WEBHOOK_SELECT} WHERE w.workspace_id = $1 AND w.name = $2",
            ws["id"],
            ref,
        )
        where = f" in workspace {ws['name']!r}"
    else:
        records = await conn.fetch(
            f"{WEBHOOK_SELECT} WHERE w.name = $1 ORDER BY ws.name",
            ref,
        )
        where = ""
    if not records:
        raise CliError(
            f"no webhook named {ref!r}{where}",
            hint="see `leadwire webhook list` (a webhook is named by its name or id)",
        )
    if len(records) > 1:
        names = ", ".join(repr(r["workspace"]) for r in records)
        raise CliError(
            f"{len(records)} webhooks are named {ref!r} (in workspaces {names})",
            hint="add --workspace W, or use the webhook's id",
        )
    return dict(records[0])


async def list_webhooks(
    conn: asyncpg.Connection, workspace_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f"{WEBHOOK_SELECT} WHERE $1::uuid IS NULL OR w.workspace_id = $1 ORDER BY ws.name, w.name",
        workspace_id,
    )
    return [dict(r) for r in records]


async def update_webhook(
    conn: asyncpg.Connection, ident: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    if changes:
        sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(changes))
        await conn.execute(
            f"UPDATE webhooks SET {sets}, updated_at = now() WHERE id = $1",
            ident,
            *changes.values(),
        )
    return await get_webhook_by_id(conn, ident)


async def rotate_secret(
    conn: asyncpg.Connection,
    ident: uuid.UUID,
    *,
    stored: str,
    grace: timedelta,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Make ``stored`` the secret; the old one stays valid for ``grace`` (none if zero).

    The expiry uses the database clock, the one the gateways' reads share."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE webhooks
               SET secret_previous = CASE WHEN $3 > interval '0' THEN secret END,
                   secret_previous_expires_at = CASE WHEN $3 > interval '0' AND secret IS NOT NULL
                                                     THEN now() + $3 END,
                   secret = $2,
                   basic_username = COALESCE($4, basic_username),
                   updated_at = now()
               WHERE id = $1""",
            ident,
            stored,
            grace,
            extra.get("basic_username"),
        )
        return await get_webhook_by_id(conn, ident)


# --- boards -------------------------------------------------------------------------


async def create_board(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, name: str
) -> dict[str, Any]:
    try:
        record = await conn.fetchrow(
            "INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, $3) "
            "RETURNING id, workspace_id, name, created_at",
            uuid.uuid4(),
            workspace_id,
            name,
        )
    except asyncpg.UniqueViolationError:
        raise CliError(
            f"this workspace already has a board named {name!r}",
            hint="pick another name, or see `leadwire board list --workspace ...`",
        ) from None
    assert record is not None
    return dict(record)


async def list_boards(
    conn: asyncpg.Connection, workspace_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    records = await conn.fetch(
        """SELECT b.id, b.workspace_id, ws.name AS workspace, b.name, b.created_at,
                  (SELECT count(*) FROM board_rules r WHERE r.board_id = b.id) AS rules
           FROM boards b JOIN workspaces ws ON ws.id = b.workspace_id
           WHERE $1::uuid IS NULL OR b.workspace_id = $1
           ORDER BY ws.name, b.name""",
        workspace_id,
    )
    return [dict(r) for r in records]


async def get_board(conn: asyncpg.Connection, workspace_id: uuid.UUID, ref: str) -> dict[str, Any]:
    ident = as_uuid(ref)
    record = None
    if ident is not None:
        record = await conn.fetchrow(
            "SELECT id, workspace_id, name, created_at FROM boards WHERE id = $1 AND workspace_id = $2",
            ident,
            workspace_id,
        )
    if record is None:
        record = await conn.fetchrow(
            "SELECT id, workspace_id, name, created_at FROM boards WHERE name = $1 AND workspace_id = $2",
            ref,
            workspace_id,
        )
    if record is None:
        raise CliError(
            f"no board named {ref!r} in this workspace",
            hint="see `leadwire board list --workspace ...`, or create it with `leadwire board create`",
        )
    return dict(record)


# --- rules --------------------------------------------------------------------------

RULE_SELECT = """SELECT r.id, r.workspace_id, ws.name AS workspace, r.board_id, b.name AS board,
           r.webhook_id, h.name AS webhook, r.conditions, r.priority, r.created_at
    FROM board_rules r
    JOIN workspaces ws ON ws.id = r.workspace_id
    JOIN boards b ON b.id = r.board_id
    LEFT JOIN webhooks h ON h.id = r.webhook_id"""


async def add_rule(
    conn: asyncpg.Connection,
    *,
    workspace_id: uuid.UUID,
    board_id: uuid.UUID,
    webhook_id: uuid.UUID | None,
    conditions: list[dict[str, Any]],
    priority: int,
) -> dict[str, Any]:
    ident = uuid.uuid4()
    await conn.execute(
        """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions, priority)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        ident,
        workspace_id,
        board_id,
        webhook_id,
        conditions,
        priority,
    )
    record = await conn.fetchrow(f"{RULE_SELECT} WHERE r.id = $1", ident)
    assert record is not None
    return dict(record)


async def list_rules(
    conn: asyncpg.Connection, workspace_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f"{RULE_SELECT} WHERE $1::uuid IS NULL OR r.workspace_id = $1 "
        "ORDER BY ws.name, r.priority, r.created_at, r.id",
        workspace_id,
    )
    return [dict(r) for r in records]


async def remove_rule(conn: asyncpg.Connection, ident: uuid.UUID) -> dict[str, Any]:
    record = await conn.fetchrow(f"{RULE_SELECT} WHERE r.id = $1", ident)
    if record is None:
        raise CliError(f"no rule with id {ident}", hint="see `leadwire rule list`")
    await conn.execute("DELETE FROM board_rules WHERE id = $1", ident)
    return dict(record)
