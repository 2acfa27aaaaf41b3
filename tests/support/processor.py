"""Helpers for processor tests: tenants in SQL, realistic LeadReceived events, running
processors in-process, reading a topic, and the lost / duplicate / unseen count."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.processor.handlers import AfterCommit
from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared import topics
from shared.db import connect
from shared.events import (
    LeadProcessed,
    LeadReceived,
    MappedLead,
    RawRequest,
    decode_outcome,
    encode,
    request_id_for,
    utcnow,
)
from shared.kafka import Publisher, ensure_topics
from shared.settings import CommonSettings


def processor_settings(settings: CommonSettings, **overrides: Any) -> ProcessorSettings:
    """ProcessorSettings for a test: its settings plus processor fields."""
    return ProcessorSettings(**{**settings.model_dump(), **overrides})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- tenants ------------------------------------------------------------------------


@dataclass
class Tenant:
    workspace_id: uuid.UUID
    webhook_ids: list[uuid.UUID]
    boards: dict[str, uuid.UUID] = field(default_factory=dict)

    @property
    def webhook_id(self) -> uuid.UUID:
        return self.webhook_ids[0]


async def seed_tenant(
    conn: asyncpg.Connection, *, webhooks: int = 1, boards: Sequence[str] = ()
) -> Tenant:
    """A workspace with webhooks and boards, inserted straight into the tables."""
    ws = uuid.uuid4()
    await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"ws-{ws.hex[:8]}")
    hooks = [uuid.uuid4() for _ in range(webhooks)]
    for i, hook in enumerate(hooks):
        await conn.execute(
            "INSERT INTO webhooks (id, workspace_id, name) VALUES ($1, $2, $3)",
            hook,
            ws,
            f"hook-{i}",
        )
    tenant = Tenant(ws, hooks)
    for name in boards:
        board = uuid.uuid4()
        await conn.execute(
            "INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, $3)", board, ws, name
        )
        tenant.boards[name] = board
    return tenant


async def add_rule(
    conn: asyncpg.Connection,
    tenant: Tenant,
    board: str,
    *,
    conditions: list[dict[str, Any]] | None = None,
    webhook_id: uuid.UUID | None = None,
    priority: int = 100,
) -> uuid.UUID:
    rule = uuid.uuid4()
    await conn.execute(
        """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions, priority)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        rule,
        tenant.workspace_id,
        tenant.boards[board],
        webhook_id,
        conditions or [],
        priority,
    )
    return rule


# --- events ------------------------------------------------------------------------


def received(
    tenant: Tenant,
    *,
    webhook_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    body: dict[str, Any] | None = None,
    request_id: uuid.UUID | None = None,
    crm_id: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = "Ann",
    last_name: str | None = "Lee",
    product: str | None = "Bath Remodel",
    lead_status: str | None = "new",
    custom: dict[str, Any] | None = None,
    replay_of: uuid.UUID | None = None,
) -> LeadReceived:
    """A LeadReceived as the gateway makes it: the vendor's body, the mapped lead, steps."""
    hook = webhook_id or tenant.webhook_id
    payload = (
        body
        if body is not None
        else {
            "firstname": first_name,
            "lastname": last_name,
            "phone_number": phone,
            "email": email,
            "external_crm_id": crm_id,
            "product": product,
            "lead_status": lead_status,
            **(custom or {}),
        }
    )
    raw = orjson.dumps(payload)
    rid = request_id or (
        request_id_for(hook, idempotency_key) if idempotency_key is not None else uuid.uuid4()
    )
    headers = {"content-type": "application/json", "user-agent": "LeadConduit/1.0"}
    if idempotency_key is not None:
        headers["webhook-id"] = idempotency_key
    return LeadReceived(
        request_id=rid,
        workspace_id=tenant.workspace_id,
        webhook_id=hook,
        received_at=utcnow(),
        idempotency_key=idempotency_key,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        request=RawRequest(
            path=f"/webhooks/{hook}",
            headers=headers,
            content_type="application/json",
            payload=payload,
        ),
        lead=MappedLead(
            crm_id=crm_id,
            phone=phone,
            email=email,
            first_name=first_name,
            last_name=last_name,
            product=product,
            lead_status=lead_status,
            custom=custom or {},
        ),
        steps={"authentication": 0.2, "field_mapping": 0.4, "validation": 0.1, "enqueue": 2.0},
        replay_of=replay_of,
    )


def phone_of(i: int) -> str:
    return f"+1555{i:07d}"


async def prepare_topics(settings: CommonSettings, partitions: int = 4) -> None:
    await ensure_topics(
        settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=partitions
    )


async def publish(
    settings: CommonSettings,
    events: Iterable[LeadReceived | bytes | tuple[str, LeadReceived]],
    *,
    key: str | None = None,
) -> None:
    """Publish raw events and wait for acks. Keyed by workspace as the gateway does, or by
    ``key`` (bytes), or by the key paired with the event (to spread one workspace's leads
    over partitions, so several processors race on them)."""
    async with Publisher(settings, client_id="test-gateway") as pub:
        items: list[tuple[str | None, bytes]] = []
        for ev in events:
            if isinstance(ev, bytes):
                items.append((key, ev))
            elif isinstance(ev, tuple):
                items.append((ev[0], encode(ev[1])))
            else:
                items.append((str(ev.workspace_id), encode(ev)))
        await pub.publish_many(topics.RAW, items, timeout=30)


# --- processors ---------------------------------------------------------------------


class InProcess:
    """One processor running in this event loop."""

    def __init__(
        self, settings: ProcessorSettings, *, after_commit: AfterCommit | None = None
    ) -> None:
        self.settings = settings
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] = asyncio.create_task(
            run_processor(settings, self.stop_event, serve_http=False, after_commit=after_commit)
        )

    async def stop(self, deadline_s: float = 30) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, deadline_s)


@contextlib.asynccontextmanager
async def processors(
    settings: ProcessorSettings, count: int = 1, *, after_commit: AfterCommit | None = None
) -> AsyncIterator[list[InProcess]]:
    running = [InProcess(settings, after_commit=after_commit) for _ in range(count)]
    try:
        yield running
    finally:
        for p in running:
            if not p.task.done():
                p.stop_event.set()
        await asyncio.gather(
            *(asyncio.wait_for(p.task, 30) for p in running), return_exceptions=True
        )


# --- observing ----------------------------------------------------------------------


async def read_topic(
    settings: CommonSettings, logical: str, *, deadline_s: float = 15
) -> list[bytes]:
    """Every message on a topic from offset 0 up to its current end (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        name = settings.topic(logical)
        cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(), deadline_s)
        partitions = cluster.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            if loop.time() > deadline:
                raise TimeoutError(f"reading {name}")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [r.value for r in records if r.value is not None]
        return out
    finally:
        await consumer.stop()


async def group_caught_up(settings: ProcessorSettings, *, logical: str = topics.RAW) -> bool:
    """The processor group's committed offsets reached the end of every partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.processor_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        name = settings.topic(logical)
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(name, p) for p in cluster.partitions_for_topic(name) or ()]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return bool(tps)
    finally:
        await consumer.stop()


async def outcomes(settings: CommonSettings) -> list[Any]:
    return [decode_outcome(v) for v in await read_topic(settings, topics.OUTCOMES)]


async def wait_processed(
    database_url: str, request_ids: Iterable[uuid.UUID], *, deadline_s: float = 60
) -> int:
    """Until every request has its webhook_requests row or the deadline passes; returns how
    many have one. Reconnects if the connection drops (a test may restart Postgres)."""
    ids = list(set(request_ids))
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    done = 0
    while True:
        try:
            conn = await connect(database_url)
            try:
                while True:
                    done = await conn.fetchval(
                        "SELECT count(*) FROM webhook_requests WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL",
                        ids,
                    )
                    if done == len(ids) or loop.time() > end:
                        return int(done)
                    await asyncio.sleep(0.1)
            finally:
                conn.terminate()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if loop.time() > end:
                return int(done)
            await asyncio.sleep(0.2)


@dataclass
class Tally:
    """Jepsen-style counts for a set of accepted requests."""

    sent: int
    delivered: int
    lost: int
    duplicate_leads: int
    duplicate_contacts: int
    unseen: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.duplicate_leads + self.duplicate_contacts

    def report(self, name: str) -> str:
        extras = "".join(f" {k}={v}" for k, v in self.extra.items())
        line = (
            f"[{name}] sent={self.sent} delivered={self.delivered} lost={self.lost} "
            f"duplicate={self.duplicates} (leads={self.duplicate_leads} "
            f"contacts={self.duplicate_contacts}) unseen={self.unseen}{extras}"
        )
        print(line)
        return line


async def tally(
    database_url: str,
    sent: Sequence[LeadReceived],
    *,
    people: int | None = None,
    final: bool = True,
) -> Tally:
    """Classify the sent requests against Postgres.

    ``people``: how many distinct persons (identities) the events carry; every extra
    contact in their workspaces is a duplicate. ``final``: faults are over and processing
    was waited for, so a request still missing is lost (else it is unseen).
    """
    ids = list({e.request_id for e in sent})
    workspaces = list({e.workspace_id for e in sent})
    conn = await connect(database_url)
    try:
        lead_rows = await conn.fetch(
            "SELECT request_id, count(*) AS n FROM leads WHERE request_id = ANY($1::uuid[]) GROUP BY request_id",
            ids,
        )
        finished = {
            r["request_id"]: r["status"]
            for r in await conn.fetch(
                "SELECT request_id, status FROM webhook_requests WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL",
                ids,
            )
        }
        contacts = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE workspace_id = ANY($1::uuid[])", workspaces
        )
    finally:
        await conn.close()
    leads = {r["request_id"]: r["n"] for r in lead_rows}
    delivered = sum(1 for i in ids if leads.get(i) == 1 and finished.get(i) == "processed")
    missing = sum(1 for i in ids if i not in finished)
    dup_leads = sum(n - 1 for n in leads.values() if n > 1)
    dup_contacts = max(contacts - people, 0) if people is not None else 0
    return Tally(
        sent=len(ids),
        delivered=delivered,
        lost=missing if final else 0,
        duplicate_leads=dup_leads,
        duplicate_contacts=dup_contacts,
        unseen=0 if final else missing,
        extra={"contacts": contacts},
    )


def outcome_ids(items: Sequence[Any]) -> tuple[set[uuid.UUID], int]:
    """(distinct event ids, total outcome messages)."""
    return {o.event_id for o in items}, len(items)


def processed(items: Sequence[Any]) -> list[LeadProcessed]:
    return [o for o in items if isinstance(o, LeadProcessed)]


def ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)
