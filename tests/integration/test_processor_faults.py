"""Faults around the processor (D3 kill -9 / SIGTERM, D4 rebalance, D6 Postgres restart,
D7 redelivery and replay, D8 crash between commit and publish). Each prints its lost /
duplicate / unseen counts; all must end at lost = 0 and duplicates = 0."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.processor import metrics
from services.processor.handlers import Hooks
from services.processor.settings import ProcessorSettings
from shared import topics
from shared.db import connect, migrate
from shared.events import LeadProcessed, LeadReceived, outcome_event_id
from shared.settings import CommonSettings
from tests.support.events import publish_events, received
from tests.support.faulty_processor import FAULTS_ENV
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess, env_for
from tests.support.processor import (
    InProcess,
    Tenant,
    add_rule,
    outcomes,
    phone_of,
    prepare_topics,
    processor_settings,
    processors,
    seed_tenant,
    tally,
    wait_processed,
)
from tests.support.topics import read_topic, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# The identifiers a returning person's lead carries, in turn: every match path of the
# dedupe (CRM id, phone, email, and mixes) is taken, so a bug in any one of them makes a
# second contact for the person, which the tally counts as a duplicate.
REPEAT_KEYS = (
    ("crm_id",),
    ("phone",),
    ("email",),
    ("crm_id", "email"),
    ("phone", "email"),
    ("crm_id", "phone"),
)


def workload(
    t: Tenant, n: int, *, base: int = 0
) -> tuple[list[LeadReceived], Callable[[LeadReceived], int]]:
    """``n`` leads where every tenth is another lead of an earlier person (10 % duplicates)
    with a mix of that person's identifiers (:data:`REPEAT_KEYS`); returns the events and
    who each one comes from."""
    events = []
    person_of: dict[uuid.UUID, int] = {}
    for i in range(n):
        repeat = i % 10 == 9
        person = base + (i - 1 if repeat else i)
        ids: dict[str, str | None] = {
            "crm_id": f"crm-{person}",
            "phone": phone_of(person),
            "email": f"p{person}@x.io",
        }
        if repeat:
            carried = REPEAT_KEYS[i // 10 % len(REPEAT_KEYS)]
            ids = {k: (v if k in carried else None) for k, v in ids.items()}
        event = received(
            t.workspace_id,
            t.webhook_id,
            crm_id=ids["crm_id"],
            phone=ids["phone"],
            email=ids["email"],
            product="Kitchen" if person % 2 else "Bath",
            first_name=f"F{i}",
        )
        events.append(event)
        person_of[event.request_id] = person
    return events, lambda e: person_of[e.request_id]


def spread(events: Sequence[LeadReceived]) -> list[tuple[str, LeadReceived]]:
    """Random keys: the events land on every partition of the raw topic."""
    return [(str(uuid.uuid4()), e) for e in events]


async def committed_count(url: str, ids: Sequence[uuid.UUID]) -> int:
    conn = await connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM webhook_requests WHERE request_id = ANY($1::uuid[])",
                list(ids),
            )
        )
    finally:
        await conn.close()


async def scrape(port: int, name: str) -> float:
    """Sum of a metric's samples on a processor's /metrics."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if m and (
            'topic="webhooks.raw"' in (m.group(1) or "") or "topic=" not in (m.group(1) or "")
        ):
            if 'result="ok"' in (m.group(1) or "") or "result=" not in (m.group(1) or ""):
                total += float(m.group(2))
    return total


async def check_outcomes(
    s: CommonSettings, events: Sequence[LeadReceived], name: str
) -> tuple[int, int]:
    """Every request has exactly one distinct outcome event id; returns (messages, distinct)."""
    got = await outcomes(s)
    ids = {e.request_id for e in events}
    by_request: dict[uuid.UUID, set[uuid.UUID]] = {}
    for o in got:
        by_request.setdefault(o.request_id, set()).add(o.event_id)
    missing = [r for r in ids if r not in by_request]
    multi = [r for r, v in by_request.items() if len(v) != 1]
    distinct = len({o.event_id for o in got})
    print(
        f"[{name}] outcome messages={len(got)} distinct={distinct} requests={len(ids)} "
        f"missing={len(missing)} republished={len(got) - distinct}"
    )
    assert not missing and not multi
    assert all(by_request[r] == {outcome_event_id(r)} for r in ids)
    return len(got), distinct


def service(s: ProcessorSettings, tmp_path: Path, port: int, *, faults: str = "") -> ServiceProcess:
    """A processor process; ``faults`` (see tests.support.faulty_processor) are test hooks."""
    env = env_for(s, LEADWIRE_PROCESSOR_OPS_PORT=str(port), LEADWIRE_LOG_LEVEL="WARNING")
    if not faults:
        return ServiceProcess("processor", env, tmp_path)
    env = {**env, FAULTS_ENV: faults}
    return ServiceProcess("processor", env, tmp_path, module="tests.support.faulty_processor")


async def recover(
    s: ProcessorSettings, tmp_path: Path, ids: Sequence[uuid.UUID], *, deadline_s: float
) -> tuple[float, float]:
    """A processor process left to finish every request and commit its offsets; what it
    was handed and how many outcomes it re-published from the store."""
    port = free_port()
    survivor = service(s, tmp_path, port).start()
    try:
        await survivor.wait_ready(f"http://127.0.0.1:{port}/readyz")
        await wait_processed(s.database_url, ids, deadline_s=deadline_s)
        await wait_caught_up(s, s.processor_group, topics.RAW, deadline_s=30)
        received = await scrape(port, "leadwire_processor_messages_received_total")
        return received, await scrape(port, "leadwire_processor_republished_total")
    finally:
        survivor.stop()


# --- D3 -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_d3_processor_killed_mid_batch(
    settings: CommonSettings, db: asyncpg.Connection, tmp_path: Path, sig: signal.Signals
) -> None:
    s = processor_settings(settings, processor_batch_max=20)
    await prepare_topics(s)
    t = await seed_tenant(db)
    events, person = workload(t, 300)
    ids = [e.request_id for e in events]
    await publish_events(s, spread(events), logical=topics.RAW)

    port = free_port()
    first = service(s, tmp_path, port, faults="hold_ms=120").start()
    received_by_first = 0.0

    async def watch() -> None:
        # What the first processor was handed, up to its last moment.
        nonlocal received_by_first
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                received_by_first = await scrape(port, "leadwire_processor_messages_received_total")
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        await first.wait_ready(f"http://127.0.0.1:{port}/readyz")
        await eventually(
            lambda: committed_count(s.database_url, ids),
            until=lambda n: n >= 60,
            deadline_s=60,
            what="60 leads committed",
        )

        async def in_flight() -> float:
            # Handed to the processor but not committed: a batch is in its transaction.
            return received_by_first - await committed_count(s.database_url, ids)

        await eventually(
            in_flight,
            until=lambda n: n > 0,
            deadline_s=30,
            interval_s=0.005,
            what="a batch in flight",
        )
        first.kill(sig)
        code = await asyncio.to_thread(first.wait, 30)
    finally:
        watcher.cancel()
        first.kill(signal.SIGKILL)
    at_stop = await committed_count(s.database_url, ids)
    if sig == signal.SIGTERM:
        # Graceful: the batch in hand finished and its outcomes went out before exit 0.
        assert code == 0, first.logs()[-2000:]
        published = {o.request_id for o in await outcomes(s)}
        assert len(published & set(ids)) == at_stop
    else:
        assert code == -signal.SIGKILL
    midway = await tally(s.database_url, events, person=person, final=False)
    midway.report(f"D3 {sig.name} at stop")

    received_by_second, republished = await recover(s, tmp_path, ids, deadline_s=90)
    counts = await tally(s.database_url, events, person=person)
    # Handed to a processor more than once: the first's in-flight (rolled back) batch, and
    # any committed in Postgres whose offsets were not (those re-publish their outcome).
    counts.extra["redelivered"] = int(received_by_first + received_by_second - len(events))
    counts.extra["republished_from_store"] = int(republished)
    counts.report(f"D3 {sig.name}")
    counts.assert_exactly_once()
    await check_outcomes(s, events, f"D3 {sig.name}")


# --- D4 -----------------------------------------------------------------------------


def _total(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _hold(seconds: float) -> Callable[[], Awaitable[None]]:
    async def hold() -> None:
        await asyncio.sleep(seconds)

    return hold


def _republished() -> float:
    return _total(metrics.REPUBLISHED)


async def test_d4_rebalance_while_processing(
    settings: CommonSettings, db: asyncpg.Connection
) -> None:
    slow = processor_settings(settings, processor_batch_max=10)
    fast = slow
    await prepare_topics(slow)
    t = await seed_tenant(db)
    events, person = workload(t, 400)
    ids = [e.request_id for e in events]
    before = _republished()
    received_before = _total(metrics.RECEIVED)

    async def feed() -> None:
        for i in range(0, len(events), 20):
            await publish_events(slow, spread(events[i : i + 20]), logical=topics.RAW)
            await asyncio.sleep(0.05)

    first = InProcess(slow, hooks=Hooks(in_transaction=_hold(0.08)))
    second: InProcess | None = None
    feeder = asyncio.create_task(feed())
    try:
        await eventually(
            lambda: committed_count(slow.database_url, ids),
            until=lambda n: n >= 80,
            deadline_s=60,
            what="80 committed",
        )
        second = InProcess(fast)  # joins the group: partitions are revoked mid-stream
        await eventually(
            lambda: committed_count(slow.database_url, ids),
            until=lambda n: n >= 200,
            deadline_s=60,
            what="200 committed",
        )
        await first.stop()  # leaves: its partitions move to the second processor
        await feeder
        await wait_processed(slow.database_url, ids, deadline_s=90)
        assert first.task.exception() is None
        assert not second.task.done(), "the remaining processor stopped"
    finally:
        feeder.cancel()
        for p in (first, second):
            if p is not None and not p.task.done():
                await p.stop()
    counts = await tally(slow.database_url, events, person=person)
    counts.extra["redelivered"] = int(_total(metrics.RECEIVED) - received_before - len(events))
    counts.extra["redelivered_already_stored"] = int(_republished() - before)
    counts.report("D4")
    counts.assert_exactly_once()
    assert second is not None and second.task.exception() is None
    await check_outcomes(slow, events, "D4")


# --- D6 -----------------------------------------------------------------------------


async def test_d6_postgres_restart_under_load(
    settings: CommonSettings, unique: str, tmp_path: Path
) -> None:
    from infra import Stack

    stack = Stack.for_name(f"proc-d6-{unique}", pg_port=free_port(), pg_fsync=False)
    await stack.start(components=["postgres"], timeout_s=120)
    try:
        url = stack.settings_env()["LEADWIRE_DATABASE_URL"]
        await migrate(url)
        s = processor_settings(settings, database_url=url, processor_batch_max=25)
        await prepare_topics(s)
        conn = await connect(url)
        try:
            t = await seed_tenant(conn)
        finally:
            await conn.close()
        events, person = workload(t, 400)
        ids = [e.request_id for e in events]

        async def feed() -> None:
            for i in range(0, len(events), 20):
                await publish_events(s, spread(events[i : i + 20]), logical=topics.RAW)
                await asyncio.sleep(0.05)

        async with processors(s) as running:
            feeder = asyncio.create_task(feed())
            await eventually(
                lambda: committed_count(url, ids),
                until=lambda n: n >= 60,
                deadline_s=60,
                what="60 committed",
            )
            await stack.postgres.stop()
            await asyncio.sleep(1.0)  # the fault's length: down while leads keep arriving
            await stack.postgres.start()
            await feeder
            await wait_processed(url, ids, deadline_s=120)
            assert not running[0].task.done(), "the processor gave up"
        counts = await tally(url, events, person=person)
        counts.report("D6")
        counts.assert_exactly_once()
        await check_outcomes(s, events, "D6")
    finally:
        await stack.destroy()


# --- D7 -----------------------------------------------------------------------------


async def _snapshot(conn: asyncpg.Connection, t: Tenant) -> dict[str, Any]:
    return {
        "leads": sorted(
            tuple(r)
            for r in await conn.fetch(
                "SELECT id, request_id, contact_id FROM leads WHERE workspace_id = $1",
                t.workspace_id,
            )
        ),
        "contacts": sorted(
            tuple(r)
            for r in await conn.fetch(
                """SELECT id, crm_id, phone, email, first_name, board_id, updated_at
                 FROM contacts WHERE workspace_id = $1""",
                t.workspace_id,
            )
        ),
        "requests": sorted(
            tuple(r)
            for r in await conn.fetch(
                "SELECT request_id, status, result::text FROM webhook_requests WHERE workspace_id = $1",
                t.workspace_id,
            )
        ),
        "pairs": await conn.fetchval(
            "SELECT count(*) FROM possible_duplicates WHERE workspace_id = $1", t.workspace_id
        ),
    }


async def test_d7_every_message_twice_then_replay_from_zero(
    settings: CommonSettings, db: asyncpg.Connection
) -> None:
    s = processor_settings(settings, processor_batch_max=50)
    await prepare_topics(s)
    t = await seed_tenant(db, boards=["kitchen"])
    await add_rule(
        db, t, "kitchen", conditions=[{"field": "product", "op": "eq", "value": "kitchen"}]
    )
    events, person = workload(t, 120)
    # Every message delivered twice: each is on the topic two times (different offsets).
    await publish_events(s, spread(events) + spread(events), logical=topics.RAW)
    async with processors(s):
        await wait_processed(s.database_url, [e.request_id for e in events])
        await wait_caught_up(s, s.processor_group, topics.RAW, deadline_s=30)
    first = await _snapshot(db, t)
    got = await outcomes(s)
    firings = sum(
        1
        for o in {o.event_id: o for o in got}.values()
        if isinstance(o, LeadProcessed) and o.rule_applied
    )

    replay = processor_settings(
        settings, processor_batch_max=50, processor_group=f"replay-{uuid.uuid4().hex[:8]}"
    )
    async with processors(replay):
        await wait_caught_up(replay, replay.processor_group, topics.RAW, deadline_s=60)
    second = await _snapshot(db, t)
    counts = await tally(s.database_url, events, person=person)
    counts.report("D7")
    counts.assert_exactly_once()
    assert second == first, "replay changed leads, contacts, results or possible duplicates"
    _messages, distinct = await check_outcomes(s, events, "D7")
    assert distinct == len(events)
    after = {o.event_id: o for o in await outcomes(s)}
    refirings = sum(1 for o in after.values() if isinstance(o, LeadProcessed) and o.rule_applied)
    print(f"[D7] rule firings first={firings} after replay={refirings}")
    assert firings == refirings == sum(1 for e in events if e.lead.product == "Kitchen")


# --- D8 -----------------------------------------------------------------------------


async def test_d8_failure_between_commit_and_publish_in_process(
    settings: CommonSettings, db: asyncpg.Connection
) -> None:
    s = processor_settings(settings, processor_batch_max=50)
    await prepare_topics(s)
    t = await seed_tenant(db)
    events, person = workload(t, 100)
    crashes = 0

    def crash_once(_finished: object) -> None:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("fault: after commit, before publish")

    await publish_events(s, spread(events), logical=topics.RAW)
    async with processors(s, hooks=Hooks(after_commit=crash_once)):
        await wait_processed(s.database_url, [e.request_id for e in events])
        await wait_caught_up(s, s.processor_group, topics.RAW, deadline_s=30)
    counts = await tally(s.database_url, events, person=person)
    counts.report("D8 in-process")
    assert crashes == 1
    counts.assert_exactly_once()
    await check_outcomes(s, events, "D8 in-process")


async def test_d8_process_exits_between_commit_and_publish(
    settings: CommonSettings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    s = processor_settings(settings, processor_batch_max=50)
    await prepare_topics(s)
    t = await seed_tenant(db)
    events, person = workload(t, 100)
    ids = [e.request_id for e in events]
    await publish_events(s, spread(events), logical=topics.RAW)

    crashing = service(s, tmp_path, free_port(), faults="crash_after_commit").start()
    try:
        code = await asyncio.to_thread(crashing.wait, 60)
    finally:
        crashing.kill()
    assert code == 137, crashing.logs()[-2000:]
    stored = await committed_count(s.database_url, ids)
    before = await read_topic(s, topics.OUTCOMES)
    print(
        f"[D8] exited {code} after committing {stored} requests; outcomes published={len(before)}"
    )
    assert stored > 0 and before == []

    _, republished = await recover(s, tmp_path, ids, deadline_s=60)
    counts = await tally(s.database_url, events, person=person)
    counts.extra["republished_from_store"] = int(republished)
    counts.report("D8")
    counts.assert_exactly_once()
    assert republished >= stored
    await check_outcomes(s, events, "D8")
