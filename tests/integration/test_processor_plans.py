"""The processor's batch read reaches every contact through an index, whatever Postgres
believes of the table. asyncpg prepares the statement; after five runs Postgres keeps a
generic plan until the table is next analyzed, so a plan made while ``contacts`` was empty
(a fresh database, or one analyzed while empty) is the plan for everything after, however
large the table grows before the next ANALYZE."""

from __future__ import annotations

import re

import asyncpg
import pytest

from services.processor import sql

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
