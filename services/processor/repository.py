"""The processor's tables (contacts, leads, possible_duplicates, the results in
webhook_requests) and their SQL, in one place.

- :class:`Repository` / :class:`Transaction`: what the processor needs of its store, as
  protocols. A batch's work runs inside one :meth:`Repository.transaction`.
- :class:`PostgresRepository` / :class:`PostgresTransaction`: the asyncpg implementation.
  Batches are written with ``unnest`` (one statement per table per batch, not one per lead).
- ``services/processor/fake_repository.py``: the in-memory fake that unit tests use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeAlias

import asyncpg
import orjson

from services.processor import sql
from services.processor.dedupe import ContactState
from services.processor.rules import BoardRule, parse_conditions
from services.processor.screening import (
    DEFAULT_KEY,
    REJECT,
    Accepted,
    Screening,
    Suppressed,
)

Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


def lock_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key for an identity (workspace, key type, value)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- rows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRequest:
    request_id: uuid.UUID
    status: str
    body_sha256: str | None
    result: bytes | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class BatchQuery:
    """What a batch looks up (see :meth:`Transaction.load_batch`)."""

    request_ids: Sequence[uuid.UUID] = ()
    webhook_ids: Sequence[uuid.UUID] = ()
    # (webhook id, idempotency key) pairs.
    idempotency: Sequence[tuple[uuid.UUID, str]] = ()
    # (workspace id, key type, value) of every identity key.
    keys: Sequence[tuple[uuid.UUID, str, str]] = ()
    workspace_ids: Sequence[uuid.UUID] = ()
    # (workspace id, webhook id, key type, sha256 of the value) of every identity key:
    # for the suppression list and the duplicate-lead window.
    digests: Sequence[tuple[uuid.UUID, uuid.UUID, str, bytes]] = ()


@dataclass
class BatchView:
    """What a batch needs to read, fetched in one statement after its locks."""

    stored: dict[uuid.UUID, StoredRequest]
    # webhook id -> its workspace id, for the webhooks that exist.
    webhooks: dict[uuid.UUID, uuid.UUID]
    # (webhook id, idempotency key) -> request id of the lead that already holds it.
    idempotency_holders: dict[tuple[uuid.UUID, str], uuid.UUID]
    # Contacts holding any of the batch's keys, row-locked (FOR UPDATE, in id order).
    contacts: list[ContactState]
    # Each workspace's board rules in evaluation order.
    rules: dict[uuid.UUID, list[BoardRule]]
    # Each webhook's duplicate-lead window and key, with its workspace's suppressed mode.
    screening: dict[uuid.UUID, Screening] = field(default_factory=dict)
    # The suppression entries the batch's phones and emails reach.
    suppressed: Suppressed = field(default_factory=set)
    # The keys the batch's webhooks accepted before (kept current as the batch accepts).
    accepted: Accepted = field(default_factory=dict)


@dataclass(frozen=True)
class LeadRow:
    id: uuid.UUID
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    webhook_id: uuid.UUID
    request_id: uuid.UUID
    idempotency_key: str | None
    source: str
    status: str | None
    product_interest: str | None
    replay_of: uuid.UUID | None
    # The consent evidence the lead came with, as JSON text (leads.consent), or None.
    consent: str | None = None


@dataclass(frozen=True)
class DuplicatePair:
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    other_contact_id: uuid.UUID
    key_type: str
    request_id: uuid.UUID


@dataclass(frozen=True)
class LeadKeyRow:
    """An accepted lead's key for its webhook's duplicate-lead window."""

    webhook_id: uuid.UUID
    key_type: str
    value_sha256: bytes
    accepted_at: datetime
    request_id: uuid.UUID


@dataclass(frozen=True)
class RequestRow:
    request_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    status: str
    received_at: datetime
    processed_at: datetime
    idempotency_key: str | None
    body_sha256: str | None
    replay_of: uuid.UUID | None
    # The outcome event exactly as published (JSON text).
    result: str
    steps: dict[str, float]
    error: dict[str, Any] | None
    # Somebody waits for it (``LeadReceived.awaited``): the gateway's notification
    # (:mod:`shared.done`, with the answer), else None.
    done_notice: str | None = None


@dataclass
class ContactDetail:
    """One contact for a person to look at: its row (with ``board_name``), its latest
    leads and its possible duplicates (``other``, ``key_type``, ``created_at``)."""

    contact: dict[str, Any]
    leads: list[dict[str, Any]] = field(default_factory=list)
    possible_duplicates: list[dict[str, Any]] = field(default_factory=list)


# --- what the processor needs of its store -------------------------------------------


class Transaction(Protocol):
    """The reads and writes of one batch, inside one transaction."""

    async def lock_identities(self, keys: Iterable[int]) -> None:
        """Lock every key until the transaction ends, in ascending order."""

    async def load_batch(self, query: BatchQuery) -> BatchView:
        """Everything a batch reads; call it after :meth:`lock_identities`."""

    async def write(
        self,
        contacts: Sequence[ContactState],
        leads: Sequence[LeadRow],
        pairs: Sequence[DuplicatePair] = (),
        keys: Sequence[LeadKeyRow] = (),
    ) -> None:
        """Persist the batch's dirty contacts (updates and inserts), insert its leads and
        possible duplicate pairs (a pair already known is kept), and store the accepted
        leads' keys (one per webhook, key type and value; the later acceptance wins)."""

    async def record(self, requests: Sequence[RequestRow]) -> None:
        """Store finished requests; a finished one is never overwritten."""


class Repository(Protocol):
    """The processor's store."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A transaction: committed when the block ends, rolled back when it raises."""

    async def ping(self) -> bool:
        """True when the store answers."""

    async def possible_duplicates(
        self, workspace_id: uuid.UUID, *, limit: int
    ) -> list[dict[str, Any]]:
        """A workspace's duplicate pairs, newest first: ``pair_id``, ``key_type``,
        ``request_id``, ``created_at`` and both contacts' keys and names (``a_*``, ``b_*``)."""

    async def contact_detail(self, contact_id: uuid.UUID) -> ContactDetail | None:
        """One contact, its latest leads and its possible duplicates."""


# --- asyncpg ------------------------------------------------------------------------


class PostgresRepository:
    """The asyncpg :class:`Repository`, on a pool (the service) or one connection (the CLI)."""

    def __init__(self, db: asyncpg.Pool | Connection) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float | None = None) -> AsyncIterator[Connection]:
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire(timeout=timeout) as conn:
                yield conn
        else:
            yield self._db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Begun by its first statement (with the identity locks: one round trip), committed
        when the block ends, rolled back when it raises (one cut short: by the pool before
        it lends the connection again, tests/integration/test_shared_db.py)."""
        async with self._connection() as conn:
            try:
                yield PostgresTransaction(conn)
            except BaseException:
                if not conn.is_closed() and conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
                raise
            # COMMIT of a transaction a failed statement aborted answers ROLLBACK, not an error.
            if conn.is_in_transaction() and await conn.execute("COMMIT") != "COMMIT":
                raise asyncpg.InFailedSQLTransactionError("the transaction was rolled back")

    async def ping(self) -> bool:
        async with self._connection(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)

    async def possible_duplicates(
        self, workspace_id: uuid.UUID, *, limit: int
    ) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.POSSIBLE_DUPLICATES, workspace_id, limit)
        return [dict(r) for r in rows]

    async def contact_detail(self, contact_id: uuid.UUID) -> ContactDetail | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.CONTACT, contact_id)
            if row is None:
                return None
            leads = await conn.fetch(sql.CONTACT_LEADS, contact_id)
            pairs = await conn.fetch(sql.CONTACT_DUPLICATES, contact_id)
        return ContactDetail(
            contact=dict(row),
            leads=[dict(r) for r in leads],
            possible_duplicates=[dict(r) for r in pairs],
        )


class PostgresTransaction:
    """The asyncpg :class:`Transaction`: runs on a connection inside a transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def _begin(self) -> None:
        if not self._conn.is_in_transaction():
            await self._conn.execute("BEGIN")

    async def lock_identities(self, keys: Iterable[int]) -> None:
        """Take transaction-scoped advisory locks on every key, in ascending order.

        Every processor locks in the same (sorted) order, so two batches that share keys wait
        for each other instead of deadlocking. The locks go at commit or rollback. As the
        transaction's first statement, it begins it in the same round trip.
        """
        ordered = sorted(set(keys))
        if not ordered:
            await self._begin()
        elif self._conn.is_in_transaction():
            await self._conn.execute(sql.LOCK, ordered)
        else:
            await self._conn.execute(sql.begin_and_lock(ordered))

    async def load_batch(self, query: BatchQuery) -> BatchView:
        """Everything a batch reads, in one round trip; call it after :meth:`lock_identities`.

        It runs after the locks are held, so its snapshot includes whatever the transaction
        it waited for committed. The contacts are locked ``FOR UPDATE`` in id order: the
        batch's view of them stays current until it commits (a processor reaching the same
        contact through another key waits), and every processor locks rows in the same
        order. The contacts come back as they are now, so a contact that gave a key up while
        this waited is indexed under its current keys, not the one that found it.
        """
        await self._begin()
        row = await self._conn.fetchrow(sql.LOAD, *sql.load_args(query))
        assert row is not None
        return BatchView(
            stored={s.request_id: s for s in map(_stored_request, row["stored"] or ())},
            webhooks={uuid.UUID(h["id"]): uuid.UUID(h["workspace_id"]) for h in row["hooks"] or ()},
            idempotency_holders={
                (uuid.UUID(i["webhook_id"]), i["idempotency_key"]): uuid.UUID(i["request_id"])
                for i in row["idem"] or ()
            },
            contacts=[_contact_state(c) for c in row["contacts"] or ()],
            rules=_board_rules(row["rules"] or ()),
            screening={uuid.UUID(h["id"]): _screening(h) for h in row["hooks"] or ()},
            suppressed={
                (uuid.UUID(x["workspace_id"]), x["kind"], bytes.fromhex(x["h"]))
                for x in row["supp"] or ()
            },
            accepted={
                (uuid.UUID(x["webhook_id"]), x["key_type"], bytes.fromhex(x["h"])): (
                    datetime.fromisoformat(x["accepted_at"])
                )
                for x in row["seen"] or ()
            },
        )

    async def write(
        self,
        contacts: Sequence[ContactState],
        leads: Sequence[LeadRow],
        pairs: Sequence[DuplicatePair] = (),
        keys: Sequence[LeadKeyRow] = (),
    ) -> None:
        """The batch's final contact states, its leads, pairs and accepted keys: one
        statement (``sql.WRITE``; ``keys`` hold one row per webhook, key type and value).

        Keys an existing contact gives up are cleared first, in a statement of their own, so
        a key that moves within the batch (one contact changes its phone, another lead's
        contact takes the old one) never meets its former holder in the unique index,
        whatever order the rows are written in.
        """
        await self._begin()
        changed = [c for c in contacts if c.dirty and not c.is_new]
        created = [c for c in contacts if c.dirty and c.is_new]
        clearing = [(c, c.cleared_keys()) for c in changed]
        clearing = [(c, kinds) for c, kinds in clearing if kinds]
        if clearing:
            await self._conn.execute(
                sql.CLEAR_KEYS,
                [c.id for c, _ in clearing],
                ["crm_id" in kinds for _, kinds in clearing],
                ["phone" in kinds for _, kinds in clearing],
                ["email" in kinds for _, kinds in clearing],
            )
        if not (changed or created or leads or pairs or keys):
            return
        await self._conn.execute(
            sql.WRITE,
            *_contact_columns(changed),
            *_contact_columns(created),
            [c.workspace_id for c in created],
            [x.id for x in leads],
            [x.workspace_id for x in leads],
            [x.contact_id for x in leads],
            [x.webhook_id for x in leads],
            [x.request_id for x in leads],
            [x.idempotency_key for x in leads],
            [x.source for x in leads],
            [x.status for x in leads],
            [x.product_interest for x in leads],
            [x.replay_of for x in leads],
            [p.workspace_id for p in pairs],
            [p.contact_id for p in pairs],
            [p.other_contact_id for p in pairs],
            [p.key_type for p in pairs],
            [p.request_id for p in pairs],
            [k.webhook_id for k in keys],
            [k.key_type for k in keys],
            [k.value_sha256 for k in keys],
            [k.accepted_at for k in keys],
            [k.request_id for k in keys],
            [x.consent for x in leads],
        )

    async def record(self, requests: Sequence[RequestRow]) -> None:
        """Store finished requests (result = the outcome as published) and wake whoever
        waits for them (``Prefer: wait``: the ``awaited`` ones, their answer in the
        notification: :mod:`shared.done`), in one statement.

        A request row the gateway may have left without a result is completed in place; a
        finished row is never overwritten (the caller checked, under the identity locks).
        """
        await self._begin()
        if not requests:
            return
        await self._conn.execute(
            sql.RECORD,
            [r.request_id for r in requests],
            [r.workspace_id for r in requests],
            [r.webhook_id for r in requests],
            [r.status for r in requests],
            [r.received_at for r in requests],
            [r.processed_at for r in requests],
            [r.idempotency_key for r in requests],
            [r.body_sha256 for r in requests],
            [r.replay_of for r in requests],
            [r.result for r in requests],
            [_json(r.steps) for r in requests],
            [_json(r.error) if r.error is not None else None for r in requests],
            [r.request_id for r in requests if r.done_notice is not None],
            [r.done_notice for r in requests if r.done_notice is not None],
        )


# --- rows in and out ----------------------------------------------------------------


def _screening(hook: dict[str, Any]) -> Screening:
    return Screening(
        window_s=hook["duplicate_window_s"],
        key=tuple(hook["duplicate_key"] or DEFAULT_KEY),
        suppressed_mode=hook["suppressed_mode"] or REJECT,
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


def _stored_request(s: dict[str, Any]) -> StoredRequest:
    return StoredRequest(
        request_id=uuid.UUID(s["request_id"]),
        status=s["status"],
        body_sha256=s["body_sha256"],
        result=orjson.dumps(s["result"]),
        error=s["error"],
    )


def _contact_state(c: dict[str, Any]) -> ContactState:
    return ContactState(
        id=uuid.UUID(c["id"]),
        workspace_id=uuid.UUID(c["workspace_id"]),
        crm_id=c["crm_id"],
        phone=c["phone"],
        email=c["email"],
        first_name=c["first_name"],
        last_name=c["last_name"],
        product=c["product"],
        lead_status=c["lead_status"],
        custom=dict(c["custom"] or {}),
        board_id=_uuid(c["board_id"]),
        board_name=c["board_name"],
    )


def _board_rules(rows: Iterable[dict[str, Any]]) -> dict[uuid.UUID, list[BoardRule]]:
    rules: dict[uuid.UUID, list[BoardRule]] = {}
    for r in rows:
        conditions, valid = parse_conditions(r["conditions"])
        rules.setdefault(uuid.UUID(r["workspace_id"]), []).append(
            BoardRule(
                id=uuid.UUID(r["id"]),
                board_id=uuid.UUID(r["board_id"]),
                board_name=r["board_name"],
                webhook_id=_uuid(r["webhook_id"]),
                conditions=conditions,
                valid=valid,
            )
        )
    return rules


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # integers beyond 64 bits: the stdlib encoder takes them
        return json.dumps(value, default=str, ensure_ascii=False)


def _contact_columns(contacts: Sequence[ContactState]) -> list[list[Any]]:
    return [
        [c.id for c in contacts],
        [c.crm_id for c in contacts],
        [c.phone for c in contacts],
        [c.email for c in contacts],
        [c.first_name for c in contacts],
        [c.last_name for c in contacts],
        [c.product for c in contacts],
        [c.lead_status for c in contacts],
        [_json(c.custom) for c in contacts],
        [c.board_id for c in contacts],
    ]
