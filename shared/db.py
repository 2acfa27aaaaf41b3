"""The asyncpg pool and the SQL migration runner.

Migrations are the numbered ``shared/migrations/NNN_name.sql`` files, applied in order,
each in its own transaction, recorded in ``schema_migrations``. A Postgres advisory lock
makes concurrent runners (several services starting at once) safe; re-running is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

import asyncpg
import orjson

from shared.logs import get_logger

log = get_logger(__name__)

# Arbitrary constant: the advisory lock key that serializes migration runners.
_MIGRATION_LOCK = 0x1EAD_5173


def _encode_json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


async def connect(
    dsn: str, *, timeout: float = 10.0, server_settings: Mapping[str, str] | None = None
) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        dsn, timeout=timeout, server_settings=dict(server_settings) if server_settings else None
    )
    await _init_connection(conn)
    return conn


async def _skip_reset(_conn: asyncpg.Connection) -> None:
    """For pools whose queries leave no session state behind (see ``create_pool``)."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    stateless: bool = False,
    server_settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb with orjson.

    ``stateless=True`` skips asyncpg's reset query on every release: only for callers whose
    statements leave no session state (no SET, LISTEN, advisory session locks, cursors);
    on a hot path it halves the round trips of a one-query checkout. ``server_settings``:
    Postgres settings for every connection's session (sent when it opens).
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_skip_reset if stateless else None,
        command_timeout=30,
        timeout=10,
        server_settings=dict(server_settings) if server_settings else None,
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order."""
    folder = resources.files("shared") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version text PRIMARY KEY,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied.append(version)
                log.info("migration_applied", version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
