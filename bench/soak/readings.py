"""What the system did, read from outside: consumer group lags and committed offsets, every
message of a topic, the notifier's queue, the services' readiness; and the drain that waits
for all of it to settle after the load."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench.lag import group_lags, topic_partitions
from bench.stack import EXTRA_PROCESSOR, SERVICES, LaunchedStack, say
from shared.kafka import client_config
from shared.settings import CommonSettings


async def committed_offsets(settings: CommonSettings, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(**client_config(settings), request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        found = await asyncio.wait_for(admin.list_consumer_group_offsets(group), 10)
        return {(tp.topic, tp.partition): m.offset for tp, m in found.items()}
    finally:
        await asyncio.wait_for(admin.close(), 10)


async def read_topic(
    settings: CommonSettings, logical: str
) -> list[tuple[int, int, dict[str, Any]]]:
    """Every message of a topic from offset 0 to its end: (partition, offset, JSON)."""
    consumer = AIOKafkaConsumer(
        **client_config(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await asyncio.wait_for(consumer.start(), 15)
    out: list[tuple[int, int, dict[str, Any]]] = []
    try:
        parts = await topic_partitions(settings, [logical])
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    with contextlib.suppress(ValueError):
                        doc = orjson.loads(r.value)
                        if isinstance(doc, dict):
                            out.append((tp.partition, r.offset, doc))
    finally:
        await asyncio.wait_for(consumer.stop(), 15)
    return out


async def notifier_queue(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM notification_sends GROUP BY status"
        )
        out = {r["status"]: r["n"] for r in rows}
        out["deadletters_unpublished"] = await conn.fetchval(
            "SELECT count(*) FROM notification_deadletters WHERE published_at IS NULL"
        )
        return out
    finally:
        await conn.close()


async def drain(stack: LaunchedStack, deadline_s: float) -> dict[str, Any]:
    """Wait until every group's lag is 0 and the notifier has nothing pending, twice in a row."""
    assert stack.settings is not None
    started = time.monotonic()
    calm = 0
    polls = 0
    last: dict[str, Any] = {}
    while time.monotonic() - started < deadline_s:
        polls += 1
        if polls % 8 == 0:
            say(f"draining: {last}")
        try:
            lags = await group_lags(stack.settings)
            queue = await notifier_queue(stack.settings.database_url)
            last = {"lags": lags, "queue": queue}
            busy = (
                sum(lags.values())
                + queue.get("pending", 0)
                + queue.get("sending", 0)
                + queue["deadletters_unpublished"]
            )
            calm = calm + 1 if busy == 0 else 0
            if calm >= 3:
                last["seconds"] = round(time.monotonic() - started, 1)
                last["drained"] = True
                return last
        except Exception as exc:  # Kafka or Postgres still coming back: keep polling
            last = {"error": f"{type(exc).__name__}: {exc}"}
        await asyncio.sleep(2.0)
    last["seconds"] = round(time.monotonic() - started, 1)
    last["drained"] = False
    return last


async def service_health(stack: LaunchedStack) -> dict[str, bool]:
    out = {}
    async with aiohttp.ClientSession() as http:
        for name in [*SERVICES, EXTRA_PROCESSOR]:
            try:
                async with http.get(
                    f"{stack.ops_url(name)}/readyz", timeout=aiohttp.ClientTimeout(total=5)
                ) as r:
                    out[name] = r.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                out[name] = False
    return out
