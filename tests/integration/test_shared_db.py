"""Migrations apply from empty and re-apply as a no-op; the schema's identity backstops hold."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.db import connect, migrate, migration_files

pytestmark = pytest.mark.integration


async def test_migrations_apply_from_empty_then_reapply_as_noop(infra_env: dict[str, str]) -> None:
    admin = infra_env["LEADWIRE_DATABASE_URL"]
    name = f"m_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name

    applied = await migrate(url)
    assert applied == [v for v, _ in migration_files()]
    assert await migrate(url) == []

    db = await connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "workspaces",
            "webhooks",
            "boards",
            "board_rules",
            "contacts",
            "leads",
            "webhook_requests",
            "possible_duplicates",
            "notification_settings",
        } <= tables
    finally:
        await db.close()


async def test_one_contact_per_identity_key_is_enforced(database_url: str) -> None:
    db = await connect(database_url)
    try:
        ws = uuid.uuid4()
        await db.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"w{ws.hex[:6]}")
        await db.execute(
            "INSERT INTO contacts (id, workspace_id, phone) VALUES ($1, $2, '+16266633444')",
            uuid.uuid4(),
            ws,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.execute(
                "INSERT INTO contacts (id, workspace_id, phone) VALUES ($1, $2, '+16266633444')",
                uuid.uuid4(),
                ws,
            )
        # many contacts may lack a key
        for _ in range(2):
            await db.execute(
                "INSERT INTO contacts (id, workspace_id, email) VALUES ($1, $2, NULL)",
                uuid.uuid4(),
                ws,
            )
    finally:
        await db.close()


async def test_config_changes_are_signalled(database_url: str) -> None:
    listener = await connect(database_url)
    got: list[str] = []
    await listener.add_listener("leadwire_config", lambda *args: got.append(args[3]))
    db = await connect(database_url)
    try:
        ws = uuid.uuid4()
        await db.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'signal')", ws)
        from tests.support.polling import eventually

        async def probe() -> list[str]:
            await listener.execute("SELECT 1")  # lets the connection read notifications
            return got

        await eventually(probe, until=lambda g: f"workspaces:{ws}" in g, what="notification")
    finally:
        await db.close()
        await listener.close()


async def test_a_typical_request_result_is_stored_inline_without_compression(
    database_url: str,
) -> None:
    """A ~2-3 KB result (a typical lead's outcome) stays in its row uncompressed: Postgres
    would otherwise pglz-compress every row just over its ~2 KB default (migration 090)."""
    db = await connect(database_url)
    try:
        ws, hook, request_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await db.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"w{ws.hex[:6]}")
        await db.execute(
            "INSERT INTO webhooks (id, workspace_id, name) VALUES ($1, $2, 'hook')", hook, ws
        )
        result = {"lead": {f"field_{i}": "x" * 40 for i in range(60)}}  # ~3 KB of JSON
        await db.execute(
            "INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status,"
            " received_at, result) VALUES ($1, $2, $3, 'processed', now(), $4)",
            request_id,
            ws,
            hook,
            result,
        )
        row = await db.fetchrow(
            "SELECT pg_column_compression(result) AS method, pg_column_size(result) AS size"
            " FROM webhook_requests WHERE request_id = $1",
            request_id,
        )
        assert row["method"] is None, f"stored compressed ({row['method']})"
        assert row["size"] > 2500
    finally:
        await db.close()


async def test_a_stateless_pool_never_lends_a_connection_inside_a_transaction(
    database_url: str,
) -> None:
    """A stateless pool (the gateway's, the processor's, the archiver's) skips asyncpg's reset
    query, not its rollback (asyncpg runs it before the pool's own reset): a block that
    left its transaction open (cancelled before its COMMIT or ROLLBACK) does not hand it
    on to the next borrower."""
    from shared.db import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=1, stateless=True)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (x int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
    finally:
        await pool.close()
