"""The management repository's contract: Postgres and the in-memory fake give the same
answers (rows, orders, refusals) to the same operations, so unit tests on the fake say
something about production."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.api import admin
from services.api.fake_repository import FakeKeyStore, FakeRepository
from services.api.repository import PostgresRepository
from shared.apikeys import PostgresKeyStore, key_digest

pytestmark = pytest.mark.integration

# Ids and timestamps differ between the two runs; everything else must not.
_VOLATILE = {"id", "created_at", "updated_at", "workspace_id", "board_id", "webhook_id"}
_VOLATILE |= {"previous_secret_valid_until", "expires_at", "revoked_at", "last_used_at"}
_VOLATILE |= {"basic_username", "verify_token", "key_hint", "key", "url", "created_by", "secret"}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<set>" if v is not None else None) if k in _VOLATILE else _plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def _scenario(repo: admin.Repository) -> list[Any]:
    """Every operation the admin does, and what each answered (or refused)."""
    seen: list[Any] = []

    async def note(work: Awaitable[Any]) -> Any:
        try:
            answer = await work
        except admin.AdminError as exc:
            seen.append(("refused", type(exc).__name__, exc.code))
            return None
        seen.append(_plain(answer))
        return answer

    acme = await note(admin.create_workspace(repo, "acme", "us"))
    beta = await note(admin.create_workspace(repo, "beta", "GB"))
    await note(admin.create_workspace(repo, "acme", "US"))
    hook = await note(
        admin.create_webhook(
            repo, acme["id"], admin.WebhookSpec(name="form", auth_mode="basic"), public_url="u"
        )
    )
    await note(
        admin.create_webhook(repo, beta["id"], admin.WebhookSpec(name="form"), public_url="u")
    )
    await note(
        admin.create_webhook(repo, acme["id"], admin.WebhookSpec(name="form"), public_url="u")
    )
    fb = await note(
        admin.create_webhook(
            repo, acme["id"], admin.WebhookSpec(name="fb", template="facebook"), public_url="u"
        )
    )
    await note(admin.update_webhook(repo, fb, {"name": "form"}))
    await note(admin.update_webhook(repo, fb, {"rate_limit_per_minute": 60, "name": "fb2"}))
    await note(
        admin.rotate_secret(repo, hook, grace=timedelta(hours=1), secret=None, public_url="u")
    )
    await note(admin.rotate_secret(repo, hook, grace=timedelta(0), secret=None, public_url="u"))
    await note(admin.set_webhook_status(repo, hook, "disabled"))
    seen.append(_plain(await admin.list_webhooks(repo, None)))
    seen.append(_plain(await admin.list_webhooks(repo, acme["id"])))
    await note(admin.find_webhook(repo, "form"))  # two workspaces: ambiguous
    await note(admin.find_webhook(repo, "form", "beta"))
    board = await note(admin.create_board(repo, acme, "Solar"))
    await note(admin.create_board(repo, acme, "Solar"))
    await note(admin.create_board(repo, beta, "Solar"))
    cond = [{"field": "product", "op": "in", "value": ["a", "b"]}]
    rule = await note(
        admin.add_rule(
            repo,
            acme["id"],
            board_id=board["id"],
            webhook_id=hook["id"],
            conditions=cond,
            priority=5,
        )
    )
    await note(
        admin.add_rule(
            repo, acme["id"], board_id=board["id"], webhook_id=None, conditions=[], priority=1
        )
    )
    seen.append(_plain(await admin.list_rules(repo, None)))
    seen.append(_plain(await admin.list_boards(repo, None)))
    await note(admin.remove_rule(repo, rule["id"], beta["id"]))
    await note(admin.remove_rule(repo, rule["id"]))
    await note(admin.remove_rule(repo, rule["id"]))
    seen.append(_plain(await admin.list_workspaces(repo)))
    await note(admin.get_workspace(repo, acme["id"]))
    await note(admin.set_workspace_status(repo, beta["id"], "disabled"))
    key = await note(
        admin.create_api_key(
            repo, workspace_id=acme["id"], scope="read", name="crm", expires_in=timedelta(days=1)
        )
    )
    await note(admin.create_api_key(repo, workspace_id=None, scope="manage"))
    await note(admin.create_api_key(repo, workspace_id=None, scope="admin"))
    await note(admin.revoke_api_key(repo, key["id"], beta["id"]))
    await note(admin.revoke_api_key(repo, key["id"], acme["id"]))
    seen.append(_plain(await admin.list_api_keys(repo, acme["id"])))
    seen.append(_plain(await admin.list_api_keys(repo, None, operator_only=True)))
    seen.append(len(await admin.list_api_keys(repo, None)))
    return seen


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    from shared.db import connect

    c = await connect(database_url)
    try:
        yield c
    finally:
        await c.close()


async def test_postgres_and_the_fake_answer_alike(conn: asyncpg.Connection) -> None:
    real = await _scenario(PostgresRepository(conn))
    fake = await _scenario(FakeRepository())
    for step, (r, f) in enumerate(zip(real, fake, strict=True)):
        assert r == f, f"step {step}"


async def test_key_stores_find_the_same_keys(database_url: str, conn: asyncpg.Connection) -> None:
    fake = FakeRepository()
    stores: list[tuple[admin.Repository, Callable[[bytes], Awaitable[Any]]]] = []
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        stores = [
            (PostgresRepository(conn), PostgresKeyStore(pool).find),
            (fake, FakeKeyStore(fake).find),
        ]
        found = []
        for repo, find in stores:
            ws = await admin.create_workspace(repo, "acme", "US")
            made = await admin.create_api_key(repo, workspace_id=ws["id"], scope="manage")
            await admin.set_workspace_status(repo, ws["id"], "disabled")
            row = await find(key_digest(made["key"]))
            assert row.id == made["id"] and row.workspace_id == ws["id"]
            found.append((row.scope, row.revoked_at, row.workspace_active, row.expires_at))
            assert await find(key_digest("lwk_nothing")) is None
        assert found[0] == found[1] == ("manage", None, False, None)
    finally:
        await pool.close()


async def test_only_the_keys_digest_is_stored(conn: asyncpg.Connection) -> None:
    repo = PostgresRepository(conn)
    ws = await admin.create_workspace(repo, "acme", "US")
    made = await admin.create_api_key(repo, workspace_id=ws["id"], scope="read")
    row = dict(await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", made["id"]))
    assert bytes(row["key_hash"]) == key_digest(made["key"])
    assert made["key"] not in repr(row) and made["key"][8:-4] not in repr(row)
    assert row["prefix"] == made["key"][:8] and row["last4"] == made["key"][-4:]
    assert uuid.UUID(str(row["id"])) == made["id"]
