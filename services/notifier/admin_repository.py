"""The SQL that :mod:`services.notifier.admin` (the CLI's side) drives: a workspace's
notification settings and real-time token, and re-queueing dead-lettered sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier.ledger import token_hash


@dataclass(frozen=True, slots=True)
class StoredSettings:
    settings: dict[str, Any] | None
    realtime_token_hash: str | None
    updated_at: datetime | None


_SETTINGS_COLUMNS = "settings, realtime_token_hash, updated_at"


def _stored(row: asyncpg.Record) -> StoredSettings:
    return StoredSettings(row["settings"], row["realtime_token_hash"], row["updated_at"])


async def stored_settings(
    conn: asyncpg.Connection, workspace_id: uuid.UUID
) -> StoredSettings | None:
    row = await conn.fetchrow(
        f"SELECT {_SETTINGS_COLUMNS} FROM notification_settings WHERE workspace_id = $1",
        workspace_id,
    )
    return _stored(row) if row is not None else None


async def settings_for_update(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> StoredSettings:
    """The workspace's row (created if missing), locked until the transaction ends."""
    await conn.execute(
        "INSERT INTO notification_settings (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING",
        workspace_id,
    )
    row = await conn.fetchrow(
        f"""SELECT {_SETTINGS_COLUMNS} FROM notification_settings
            WHERE workspace_id = $1 FOR UPDATE""",
        workspace_id,
    )
    assert row is not None
    return _stored(row)


async def save_settings(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, settings: dict[str, Any]
) -> None:
    await conn.execute(
        """UPDATE notification_settings SET settings = $2, updated_at = now()
           WHERE workspace_id = $1""",
        workspace_id,
        settings,  # the connection's jsonb codec encodes it
    )


async def save_token(conn: asyncpg.Connection, workspace_id: uuid.UUID, token: str) -> None:
    """Store the token's hash (never the token)."""
    await conn.execute(
        """UPDATE notification_settings SET realtime_token_hash = $2, updated_at = now()
           WHERE workspace_id = $1""",
        workspace_id,
        token_hash(token),
    )


# --- re-driving dead letters (``leadwire deadletter retry``) ---------------------------


async def requeue_dead(conn: asyncpg.Connection, send_ids: Sequence[uuid.UUID]) -> int:
    """Put dead-lettered sends back in the queue as new (no attempts yet, due now); the
    dispatcher sends them with its next claim. Rows no longer dead (already re-queued,
    sent since) or pruned are left alone; returns how many were re-queued."""
    result = await conn.execute(
        """UPDATE notification_sends
           SET status = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL,
               claim_id = NULL, claimed_until = NULL
           WHERE id = ANY($1::uuid[]) AND status = 'dead'""",
        list(send_ids),
    )
    return int(result.split()[-1])
