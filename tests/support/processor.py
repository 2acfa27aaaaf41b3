"""Helpers for processor tests: tenants in SQL, running processors in-process, waiting
for requests to finish, and the lost / duplicate / merged / unseen account. (Events come
from :mod:`tests.support.events`, topics are read with :mod:`tests.support.topics`.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.processor.handlers import Hooks
from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared import topics
from shared.db import connect
from shared.events import LeadReceived, decode_outcome
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.topics import read_topic


def processor_settings(settings: CommonSettings, **overrides: Any) -> ProcessorSettings:
    """ProcessorSettings for a test: its settings plus processor fields."""
    return ProcessorSettings(**{**settings.model_dump(), **overrides})


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


def phone_of(i: int) -> str:
    return f"+1555{i:07d}"


async def prepare_topics(settings: CommonSettings, partitions: int = 4) -> None:
    await ensure_topics(
        settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=partitions
    )


# --- processors ---------------------------------------------------------------------


class InProcess:
    """One processor running in this event loop."""

    def __init__(self, settings: ProcessorSettings, *, hooks: Hooks = Hooks()) -> None:
        self.settings = settings
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] = asyncio.create_task(
            run_processor(settings, self.stop_event, serve_http=False, hooks=hooks)
        )

    async def stop(self, deadline_s: float = 30) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, deadline_s)


@contextlib.asynccontextmanager
async def processors(
    settings: ProcessorSettings, count: int = 1, *, hooks: Hooks = Hooks()
) -> AsyncIterator[list[InProcess]]:
    running = [InProcess(settings, hooks=hooks) for _ in range(count)]
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


async def outcomes(settings: CommonSettings) -> list[Any]:
    return [decode_outcome(v) for v in await read_topic(settings, topics.OUTCOMES)]


async def wait_processed(
    database_url: str, request_ids: Iterable[uuid.UUID], *, deadline_s: float = 60
) -> None:
    """Until every request has its finished webhook_requests row; AssertionError naming how
    many are missing at the deadline. Reconnects if the connection drops (a test may
    restart Postgres)."""
    ids = list(set(request_ids))
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    done = 0
    while loop.time() < end:
        try:
            conn = await connect(database_url)
            try:
                while loop.time() < end:
                    done = int(
                        await conn.fetchval(
                            "SELECT count(*) FROM webhook_requests"
                            " WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL",
                            ids,
                        )
                    )
                    if done == len(ids):
                        return
                    await asyncio.sleep(0.1)
            finally:
                conn.terminate()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.2)
    raise AssertionError(
        f"{len(ids) - done} of {len(ids)} request(s) not processed within {deadline_s}s"
    )


# --- the account: lost, duplicate, merged, unseen --------------------------------------


@dataclass
class Tally:
    """Jepsen-style counts for a set of accepted requests and the people they came from."""

    sent: int
    delivered: int
    lost: int
    duplicate_leads: int
    duplicate_contacts: int
    merged_people: int
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
            f"contacts={self.duplicate_contacts}) merged={self.merged_people} "
            f"unseen={self.unseen}{extras}"
        )
        print(line)
        return line

    def assert_exactly_once(self) -> None:
        """Every request delivered once, every person one contact of their own."""
        assert (self.lost, self.unseen, self.duplicates, self.merged_people) == (0, 0, 0, 0), self
        assert self.delivered == self.sent, self


async def tally(
    database_url: str,
    sent: Sequence[LeadReceived],
    *,
    person: Callable[[LeadReceived], Hashable],
    final: bool = True,
) -> Tally:
    """Classify the sent requests against Postgres.

    ``person`` names the person each request comes from (requests of one person may carry
    different identifiers: a CRM id, a phone, an email, or a mix). Each person's leads must
    sit on one contact, no other person's: a second contact is a duplicate, a shared one a
    wrong merge. A lead or contact in the workspaces that no sent request accounts for is
    a duplicate too. ``final``: faults are over and processing was waited for, so a request
    still missing is lost (else it is unseen).
    """
    ids = list({e.request_id for e in sent})
    workspaces = list({e.workspace_id for e in sent})
    conn = await connect(database_url)
    try:
        leads = {
            r["request_id"]: r["contact_id"]
            for r in await conn.fetch(
                "SELECT request_id, contact_id FROM leads WHERE workspace_id = ANY($1::uuid[])",
                workspaces,
            )
        }
        finished = {
            r["request_id"]: r["status"]
            for r in await conn.fetch(
                "SELECT request_id, status FROM webhook_requests"
                " WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL",
                ids,
            )
        }
        contacts = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM contacts WHERE workspace_id = ANY($1::uuid[])", workspaces
            )
        }
    finally:
        await conn.close()
    contacts_of: dict[Hashable, set[uuid.UUID]] = {}
    for e in sent:
        contacts_of.setdefault(person(e), set())
        if e.request_id in leads:
            contacts_of[person(e)].add(leads[e.request_id])
    people_of: dict[uuid.UUID, set[Hashable]] = {}
    for who, theirs in contacts_of.items():
        for contact in theirs:
            people_of.setdefault(contact, set()).add(who)
    stray_leads = len(set(leads) - set(ids))
    stray_contacts = len(contacts - set(people_of))
    delivered = sum(1 for i in ids if i in leads and finished.get(i) == "processed")
    missing = sum(1 for i in ids if i not in finished)
    return Tally(
        sent=len(ids),
        delivered=delivered,
        lost=missing if final else 0,
        duplicate_leads=stray_leads,
        duplicate_contacts=sum(max(len(c) - 1, 0) for c in contacts_of.values()) + stray_contacts,
        merged_people=sum(len(p) - 1 for p in people_of.values()),
        unseen=0 if final else missing,
        extra={"people": len(contacts_of), "contacts": len(contacts)},
    )
