"""How the processor and the archiver talk to Postgres: the processor's batch read reaches
every contact through an index and the archiver's read of archived requests follows its
table, whatever Postgres believes of the tables; a batch's transaction begins with its
identity locks, in one round trip. asyncpg prepares the statement; after five runs Postgres keeps a
generic plan until the table is next analyzed, so a plan made while ``contacts`` was empty
(a fresh database, or one analyzed while empty) is the plan for everything after, however
large the table grows before the next ANALYZE."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.archiver.index import KNOWN, SESSION
from services.processor import sql
from services.processor.dedupe import ContactState
from services.processor.repository import (
    DuplicatePair,
    LeadKeyRow,
    LeadRow,
    PostgresRepository,
    lock_key,
)
from services.processor.transaction import process_batch
from shared.db import connect
from shared.kafka import Message
from tests.support.events import received
from tests.support.processor import phone_of, seed_tenant

pytestmark = pytest.mark.integration


async def _generic_plan(conn: asyncpg.Connection, name: str) -> list[str]:
    params = max(int(n) for n in re.findall(r"\$(\d+)", sql.LOAD))
    await conn.execute(f"PREPARE {name} AS {sql.LOAD}")
    nulls = ", ".join(["NULL"] * params)
    return [r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE {name}({nulls})")]


async def test_the_batch_read_probes_contacts_by_index_whatever_the_statistics(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url, server_settings=sql.SESSION, statement_cache_size=0)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        plans = {"never analyzed": await _generic_plan(conn, "load_fresh")}
        await conn.execute("ANALYZE")
        plans["analyzed while empty"] = await _generic_plan(conn, "load_analyzed")
    finally:
        await conn.close()
    for stats, plan in plans.items():
        reads = [line.strip() for line in plan if " on contacts" in line]
        # Each key type's probe and the row lock, one index lookup per key: never a scan
        # of the table.
        assert len(reads) == 4, (stats, reads)
        assert all(r.startswith("->  Index Scan using contacts_") for r in reads), (stats, reads)
        assert not any("Seq Scan" in line for line in plan), (stats, "\n".join(plan))


async def _plan_after_growth(database_url: str, settings: dict[str, str]) -> list[str]:
    """The archiver's ``known`` read, run six times on an empty index (Postgres keeps a
    generic plan from then on unless told otherwise), then planned again once the table
    holds 20,000 rows and has not been analyzed since."""
    conn = await asyncpg.connect(database_url, server_settings=settings, statement_cache_size=0)
    try:
        await conn.execute("ANALYZE archive_index")
        await conn.execute(f"PREPARE known AS {KNOWN}")
        probe = "EXECUTE known(ARRAY[gen_random_uuid(), gen_random_uuid()])"
        for _ in range(6):
            await conn.execute(probe)
        await conn.execute(
            "INSERT INTO archive_index (request_id, workspace_id, webhook_id, received_at,"
            " status, segment_key, line, member_offset, member_length, member_first_line)"
            " SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), now(),"
            " 'processed', 'k', 1, 0, 1, 1 FROM generate_series(1, 20000)"
        )
        return [r[0] for r in await conn.fetch(f"EXPLAIN {probe}")]
    finally:
        await conn.close()


async def test_the_archivers_read_of_archived_requests_follows_the_table_as_it_grows(
    database_url: str,
) -> None:
    plan = await _plan_after_growth(database_url, SESSION)
    assert "Seq Scan" not in "\n".join(plan), plan
    assert any("archive_index_pkey" in line for line in plan), plan


class _Sent:
    """A connection that notes every statement it is asked to run."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    async def execute(self, query: str, *args: object) -> str:
        self.statements.append(query)
        return await self.conn.execute(query, *args)


async def _advisory_locks(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
    )


async def test_a_batch_begins_its_transaction_with_its_identity_locks_in_one_round_trip(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    sent = _Sent(conn)
    repo = PostgresRepository(sent)  # type: ignore[arg-type]
    keys = [lock_key("phone", "+15550000001"), lock_key("email", "a@x.io")]
    try:
        async with repo.transaction() as tx:
            await tx.lock_identities(keys)
            assert conn.is_in_transaction()
            assert await _advisory_locks(conn) == 2
        assert sent.statements[0].startswith("BEGIN; SELECT count(pg_advisory_xact_lock(k))")
        assert sent.statements[1:] == ["COMMIT"]
        assert not conn.is_in_transaction() and await _advisory_locks(conn) == 0

        with pytest.raises(RuntimeError):
            async with repo.transaction() as tx:
                await tx.lock_identities(keys)
                raise RuntimeError("the batch failed")
        assert sent.statements[-1] == "ROLLBACK"
        assert not conn.is_in_transaction() and await _advisory_locks(conn) == 0
    finally:
        await conn.close()


async def test_a_batch_stores_its_contacts_and_leads_in_one_statement(database_url: str) -> None:
    """New contacts, their leads (whose foreign key names a contact inserted by the same
    statement), a possible-duplicate pair and an accepted key: one round trip."""
    conn = await asyncpg.connect(database_url)
    sent = _Sent(conn)
    repo = PostgresRepository(sent)  # type: ignore[arg-type]
    try:
        t = await seed_tenant(conn)
        ann, bob = (
            ContactState(uuid.uuid4(), t.workspace_id, phone=p, is_new=True, dirty=True)
            for p in ("+15550000011", "+15550000012")
        )
        requests = [uuid.uuid4(), uuid.uuid4()]
        leads = [
            LeadRow(
                uuid.uuid4(), t.workspace_id, c.id, t.webhook_id, r, None, "api", None, None, None
            )
            for c, r in zip((ann, bob), requests, strict=True)
        ]
        pair = DuplicatePair(t.workspace_id, bob.id, ann.id, "email", requests[1])
        key = LeadKeyRow(t.webhook_id, "phone", b"\x01" * 32, datetime.now(UTC), requests[0])
        async with repo.transaction() as tx:
            await tx.lock_identities([lock_key("phone", "+15550000011")])
            await tx.write([ann, bob], leads, [pair], [key])
        assert sent.statements[1:] == [sql.WRITE, "COMMIT"]
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM contacts WHERE workspace_id = $1) AS contacts,"
            " (SELECT count(*) FROM leads WHERE workspace_id = $1) AS leads,"
            " (SELECT count(*) FROM possible_duplicates WHERE workspace_id = $1) AS pairs,"
            " (SELECT count(*) FROM webhook_lead_keys WHERE webhook_id = $2) AS keys",
            t.workspace_id,
            t.webhook_id,
        )
        assert dict(counts) == {"contacts": 2, "leads": 2, "pairs": 1, "keys": 1}
    finally:
        await conn.close()


async def test_a_batch_whose_statement_failed_never_counts_as_committed(database_url: str) -> None:
    """A block that carried on past a failed statement: its COMMIT rolls back, and the
    transaction says so (nothing of it may be published as stored)."""
    conn = await asyncpg.connect(database_url)
    repo = PostgresRepository(conn)  # type: ignore[arg-type]
    try:
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            async with repo.transaction() as tx:
                await tx.lock_identities([lock_key("phone", "+15550000002")])
                with pytest.raises(asyncpg.PostgresError):
                    await conn.execute("SELECT 1 / 0")
        assert not conn.is_in_transaction() and await _advisory_locks(conn) == 0
    finally:
        await conn.close()


async def test_a_batchs_statements_are_planned_once_not_at_every_batch(database_url: str) -> None:
    """With the processor's session settings, each batch statement keeps the plan Postgres
    made the first time (a generic one) instead of planning the batch's read afresh for
    every batch (what Postgres chooses by itself while sequential scans are off)."""
    conn = await connect(database_url, server_settings=sql.SESSION)  # as the pool's are
    repo = PostgresRepository(conn)  # type: ignore[arg-type]
    batches = 8
    try:
        t = await seed_tenant(conn)
        for i in range(batches):
            lead = received(t.workspace_id, t.webhook_id, phone=phone_of(9000 + i))
            message = Message(
                topic="raw", partition=0, offset=i, key=None, value=lead, raw=b"", timestamp_ms=0
            )
            async with repo.transaction() as tx:
                await process_batch([message], tx=tx)
        rows = await conn.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    finally:
        await conn.close()
    plans = {r["statement"]: (r["generic_plans"], r["custom_plans"]) for r in rows}
    for name in ("LOAD", "WRITE", "RECORD"):
        assert plans[getattr(sql, name)] == (batches, 0), name
