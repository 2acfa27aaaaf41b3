"""The management tables' SQL, in one place: workspaces, webhooks, boards, board rules and
API keys. :class:`Repository` is what :mod:`services.api.admin` needs;
:class:`PostgresRepository` keeps it in Postgres (on one connection: the CLI's; or on a
pool: the API's), :class:`~services.api.fake_repository.FakeRepository` in memory for
unit tests (a contract test holds the two to the same answers).

Rows are plain dicts (uuid and datetime values). A name taken raises
:class:`~services.api.errors.Conflict`. Changes to workspaces and webhooks reach the
gateways through the ``leadwire_config`` NOTIFY trigger (001).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Protocol

import asyncpg

from services.api.errors import Conflict

Row = dict[str, Any]

WORKSPACE_COLUMNS = "id, name, default_region, status, suppressed_mode, created_at, updated_at"
# A webhook with what the operations show of it, and its workspace's state and region.
WEBHOOK_SELECT = """SELECT w.id, w.workspace_id, ws.name AS workspace, w.name, w.template,
    w.auth_mode, w.status, w.rate_limit_per_minute, w.max_body_bytes, w.idempotency_field,
    w.basic_username, w.api_key_header, w.verify_token, w.mapping, w.acceptance,
    w.duplicate_window_s, w.duplicate_key, (w.facebook_page_token IS NOT NULL) AS has_page_token,
    (w.secret IS NOT NULL) AS has_secret,
    CASE WHEN w.secret_previous IS NOT NULL AND w.secret_previous_expires_at > now()
         THEN w.secret_previous_expires_at END AS previous_secret_valid_until,
    w.created_at, w.updated_at,
    ws.status AS workspace_status, ws.default_region
    FROM webhooks w JOIN workspaces ws ON ws.id = w.workspace_id"""
BOARD_COLUMNS = "id, workspace_id, name, created_at"
RULE_SELECT = """SELECT r.id, r.workspace_id, ws.name AS workspace, r.board_id, b.name AS board,
           r.webhook_id, h.name AS webhook, r.conditions, r.priority, r.created_at
    FROM board_rules r
    JOIN workspaces ws ON ws.id = r.workspace_id
    JOIN boards b ON b.id = r.board_id
    LEFT JOIN webhooks h ON h.id = r.webhook_id"""
# Never the key's hash.
KEY_SELECT = """SELECT k.id, k.workspace_id, ws.name AS workspace, k.name, k.scope, k.prefix,
           k.last4, k.created_by, k.created_at, k.expires_at, k.revoked_at, k.last_used_at
    FROM api_keys k LEFT JOIN workspaces ws ON ws.id = k.workspace_id"""
WEBHOOK_COLUMNS = frozenset(
    {
        "id",
        "workspace_id",
        "name",
        "template",
        "auth_mode",
        "secret",
        "basic_username",
        "api_key_header",
        "rate_limit_per_minute",
        "max_body_bytes",
        "idempotency_field",
        "mapping",
        "verify_token",
        "status",
        "acceptance",
        "duplicate_window_s",
        "duplicate_key",
        "facebook_page_token",
    }
)


def webhook_name_taken(name: str) -> Conflict:
    return Conflict(
        f"this workspace already has a webhook named {name!r}",
        code="name_taken",
        field="name",
        hint="pick another name, or see `leadwire webhook list --workspace ...`",
    )


class Repository(Protocol):
    # workspaces
    async def insert_workspace(self, ident: uuid.UUID, name: str, region: str) -> Row: ...
    async def workspaces(self, only: uuid.UUID | None = None) -> list[Row]: ...
    async def workspace(self, ident: uuid.UUID) -> Row | None: ...
    async def workspace_named(self, name: str) -> Row | None: ...
    async def set_workspace_status(self, ident: uuid.UUID, status: str) -> Row | None: ...
    async def workspace_counts(self, ident: uuid.UUID) -> dict[str, int]: ...

    # webhooks
    async def insert_webhook(self, values: Row) -> Row: ...
    async def webhook(self, ident: uuid.UUID) -> Row | None: ...
    async def webhooks_named(self, name: str, workspace_id: uuid.UUID | None) -> list[Row]: ...
    async def webhooks(self, workspace_id: uuid.UUID | None) -> list[Row]: ...
    async def update_webhook(self, ident: uuid.UUID, changes: Row) -> Row: ...
    async def rotate_secret(
        self, ident: uuid.UUID, *, stored: str, grace: timedelta, basic_username: str | None
    ) -> Row: ...

    # boards and rules
    async def insert_board(self, ident: uuid.UUID, workspace_id: uuid.UUID, name: str) -> Row: ...
    async def boards(self, workspace_id: uuid.UUID | None) -> list[Row]: ...
    async def board(self, workspace_id: uuid.UUID, ident: uuid.UUID) -> Row | None: ...
    async def board_named(self, workspace_id: uuid.UUID, name: str) -> Row | None: ...
    async def insert_rule(self, values: Row) -> Row: ...
    async def rules(self, workspace_id: uuid.UUID | None) -> list[Row]: ...
    async def rule(self, ident: uuid.UUID) -> Row | None: ...
    async def delete_rule(self, ident: uuid.UUID) -> None: ...

    # API keys
    async def insert_api_key(self, values: Row) -> Row: ...
    async def api_keys(
        self, workspace_id: uuid.UUID | None, *, operator_only: bool = False
    ) -> list[Row]: ...
    async def api_key(self, ident: uuid.UUID) -> Row | None: ...
    async def revoke_api_key(self, ident: uuid.UUID) -> Row | None: ...


class PostgresRepository:
    """:class:`Repository` on one connection, or on a pool (a connection per call)."""

    def __init__(self, db: asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire() as conn, conn.transaction():
                yield conn
        else:
            async with self._db.transaction():
                yield self._db

    async def _row(self, query: str, *args: Any) -> Row | None:
        record = await self._db.fetchrow(query, *args)
        return dict(record) if record is not None else None

    async def _rows(self, query: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._db.fetch(query, *args)]

    # --- workspaces -------------------------------------------------------------------

    async def insert_workspace(self, ident: uuid.UUID, name: str, region: str) -> Row:
        try:
            row = await self._row(
                f"INSERT INTO workspaces (id, name, default_region) VALUES ($1, $2, $3) "
                f"RETURNING {WORKSPACE_COLUMNS}",
                ident,
                name,
                region,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"a workspace named {name!r} already exists",
                code="name_taken",
                field="name",
                hint="pick another name, or see `leadwire workspace list`",
            ) from None
        assert row is not None
        return row

    async def workspaces(self, only: uuid.UUID | None = None) -> list[Row]:
        return await self._rows(
            f"""SELECT {WORKSPACE_COLUMNS},
                   (SELECT count(*) FROM webhooks h WHERE h.workspace_id = workspaces.id) AS webhooks,
                   (SELECT count(*) FROM boards b WHERE b.workspace_id = workspaces.id) AS boards
                FROM workspaces WHERE $1::uuid IS NULL OR id = $1 ORDER BY name""",
            only,
        )

    async def workspace(self, ident: uuid.UUID) -> Row | None:
        return await self._row(f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1", ident)

    async def workspace_named(self, name: str) -> Row | None:
        return await self._row(f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = $1", name)

    async def set_workspace_status(self, ident: uuid.UUID, status: str) -> Row | None:
        return await self._row(
            f"UPDATE workspaces SET status = $2, updated_at = now() WHERE id = $1 "
            f"RETURNING {WORKSPACE_COLUMNS}",
            ident,
            status,
        )

    async def workspace_counts(self, ident: uuid.UUID) -> dict[str, int]:
        row = await self._row(
            """SELECT (SELECT count(*) FROM webhooks WHERE workspace_id = $1) AS webhooks,
                      (SELECT count(*) FROM boards WHERE workspace_id = $1) AS boards,
                      (SELECT count(*) FROM board_rules WHERE workspace_id = $1) AS rules""",
            ident,
        )
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    # --- webhooks ---------------------------------------------------------------------

    async def insert_webhook(self, values: Row) -> Row:
        """Insert a webhook; ``values`` holds column names (id, workspace_id, name, ...)."""
        columns = [c for c in values if c in WEBHOOK_COLUMNS]
        placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
        try:
            await self._db.execute(
                f"INSERT INTO webhooks ({', '.join(columns)}) VALUES ({placeholders})",
                *(values[c] for c in columns),
            )
        except asyncpg.UniqueViolationError:
            raise webhook_name_taken(values["name"]) from None
        row = await self.webhook(values["id"])
        assert row is not None
        return row

    async def webhook(self, ident: uuid.UUID) -> Row | None:
        return await self._row(f"{WEBHOOK_SELECT} WHERE w.id = $1", ident)

    async def webhooks_named(self, name: str, workspace_id: uuid.UUID | None) -> list[Row]:
        return await self._rows(
            f"{WEBHOOK_SELECT} WHERE w.name = $1 AND ($2::uuid IS NULL OR w.workspace_id = $2) "
            "ORDER BY ws.name",
            name,
            workspace_id,
        )

    async def webhooks(self, workspace_id: uuid.UUID | None) -> list[Row]:
        return await self._rows(
            f"{WEBHOOK_SELECT} WHERE $1::uuid IS NULL OR w.workspace_id = $1 "
            "ORDER BY ws.name, w.name",
            workspace_id,
        )

    async def update_webhook(self, ident: uuid.UUID, changes: Row) -> Row:
        columns = [c for c in changes if c in WEBHOOK_COLUMNS]
        if columns:
            sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(columns))
            try:
                await self._db.execute(
                    f"UPDATE webhooks SET {sets}, updated_at = now() WHERE id = $1",
                    ident,
                    *(changes[c] for c in columns),
                )
            except asyncpg.UniqueViolationError:
                raise webhook_name_taken(changes.get("name", "")) from None
        row = await self.webhook(ident)
        assert row is not None
        return row

    async def rotate_secret(
        self, ident: uuid.UUID, *, stored: str, grace: timedelta, basic_username: str | None
    ) -> Row:
        """Make ``stored`` the secret; the old one stays valid for ``grace`` (none if zero).
        The expiry uses the database clock, the one the gateways' reads share."""
        async with self._transaction() as conn:
            await conn.execute(
                """UPDATE webhooks
                   SET secret_previous = CASE WHEN $3 > interval '0' THEN secret END,
                       secret_previous_expires_at = CASE WHEN $3 > interval '0'
                                                          AND secret IS NOT NULL
                                                         THEN now() + $3 END,
                       secret = $2,
                       basic_username = COALESCE($4, basic_username),
                       updated_at = now()
                   WHERE id = $1""",
                ident,
                stored,
                grace,
                basic_username,
            )
            record = await conn.fetchrow(f"{WEBHOOK_SELECT} WHERE w.id = $1", ident)
        assert record is not None
        return dict(record)

    # --- boards and rules -------------------------------------------------------------

    async def insert_board(self, ident: uuid.UUID, workspace_id: uuid.UUID, name: str) -> Row:
        try:
            row = await self._row(
                f"INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, $3) "
                f"RETURNING {BOARD_COLUMNS}",
                ident,
                workspace_id,
                name,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"this workspace already has a board named {name!r}",
                code="name_taken",
                field="name",
                hint="pick another name, or see `leadwire board list --workspace ...`",
            ) from None
        assert row is not None
        return row

    async def boards(self, workspace_id: uuid.UUID | None) -> list[Row]:
        return await self._rows(
            """SELECT b.id, b.workspace_id, ws.name AS workspace, b.name, b.created_at,
                      (SELECT count(*) FROM board_rules r WHERE r.board_id = b.id) AS rules
               FROM boards b JOIN workspaces ws ON ws.id = b.workspace_id
               WHERE $1::uuid IS NULL OR b.workspace_id = $1
               ORDER BY ws.name, b.name""",
            workspace_id,
        )

    async def board(self, workspace_id: uuid.UUID, ident: uuid.UUID) -> Row | None:
        return await self._row(
            f"SELECT {BOARD_COLUMNS} FROM boards WHERE id = $1 AND workspace_id = $2",
            ident,
            workspace_id,
        )

    async def board_named(self, workspace_id: uuid.UUID, name: str) -> Row | None:
        return await self._row(
            f"SELECT {BOARD_COLUMNS} FROM boards WHERE name = $1 AND workspace_id = $2",
            name,
            workspace_id,
        )

    async def insert_rule(self, values: Row) -> Row:
        await self._db.execute(
            """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions, priority)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            values["id"],
            values["workspace_id"],
            values["board_id"],
            values["webhook_id"],
            values["conditions"],
            values["priority"],
        )
        row = await self.rule(values["id"])
        assert row is not None
        return row

    async def rules(self, workspace_id: uuid.UUID | None) -> list[Row]:
        return await self._rows(
            f"{RULE_SELECT} WHERE $1::uuid IS NULL OR r.workspace_id = $1 "
            "ORDER BY ws.name, r.priority, r.created_at, r.id",
            workspace_id,
        )

    async def rule(self, ident: uuid.UUID) -> Row | None:
        return await self._row(f"{RULE_SELECT} WHERE r.id = $1", ident)

    async def delete_rule(self, ident: uuid.UUID) -> None:
        await self._db.execute("DELETE FROM board_rules WHERE id = $1", ident)

    # --- API keys ---------------------------------------------------------------------

    async def insert_api_key(self, values: Row) -> Row:
        await self._db.execute(
            """INSERT INTO api_keys (id, workspace_id, name, scope, key_hash, prefix, last4,
                                     created_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)""",
            values["id"],
            values["workspace_id"],
            values["name"],
            values["scope"],
            values["key_hash"],
            values["prefix"],
            values["last4"],
            values["created_by"],
            values["expires_in"],
        )
        row = await self.api_key(values["id"])
        assert row is not None
        return row

    async def api_keys(
        self, workspace_id: uuid.UUID | None, *, operator_only: bool = False
    ) -> list[Row]:
        """A workspace's keys, the operator keys (``operator_only``), or every key."""
        return await self._rows(
            f"""{KEY_SELECT}
                WHERE ($1::uuid IS NULL OR k.workspace_id = $1)
                  AND (NOT $2 OR k.workspace_id IS NULL)
                ORDER BY k.created_at, k.id""",
            workspace_id,
            operator_only,
        )

    async def api_key(self, ident: uuid.UUID) -> Row | None:
        return await self._row(f"{KEY_SELECT} WHERE k.id = $1", ident)

    async def revoke_api_key(self, ident: uuid.UUID) -> Row | None:
        await self._db.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", ident
        )
        return await self.api_key(ident)
