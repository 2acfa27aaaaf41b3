"""An in-memory :class:`~services.processor.repository.Repository` for unit tests.

The processor's tables as dicts, with what the code relies on from Postgres:

- a transaction commits when its block ends and leaves no trace when it raises; one runs
  at a time (as the identity locks would order them);
- identity keys (per workspace), request ids and idempotency keys (per webhook) are
  unique: a clash raises :class:`asyncpg.UniqueViolationError`, as the unique indexes do;
- text cannot hold NUL characters (:class:`asyncpg.CharacterNotInRepertoireError`), nor
  JSON a ``\\u0000`` (:class:`asyncpg.UntranslatableCharacterError`);
- a finished request is never overwritten.

:meth:`FakeRepository.fail` makes the next call of an operation raise, for the retry paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.processor.dedupe import KEY_TYPES, ContactState
from services.processor.repository import (
    BatchQuery,
    BatchView,
    ContactDetail,
    DuplicatePair,
    LeadKeyRow,
    LeadRow,
    RequestRow,
    StoredRequest,
    Transaction,
)
from services.processor.rules import BoardRule
from services.processor.screening import Screening
from shared.events import utcnow
from shared.suppression import digest


@dataclass
class Tables:
    """The fake's rows. Stored objects are never handed out (reads copy them)."""

    webhooks: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    rules: dict[uuid.UUID, list[BoardRule]] = field(default_factory=dict)
    contacts: dict[uuid.UUID, ContactState] = field(default_factory=dict)
    leads: dict[uuid.UUID, LeadRow] = field(default_factory=dict)
    pairs: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID, str], DuplicatePair] = field(
        default_factory=dict
    )
    requests: dict[uuid.UUID, RequestRow] = field(default_factory=dict)
    # Webhooks' duplicate-lead windows and workspaces' suppressed modes, as one setting.
    screening: dict[uuid.UUID, Screening] = field(default_factory=dict)
    suppressions: dict[tuple[uuid.UUID, str, bytes], None] = field(default_factory=dict)
    lead_keys: dict[tuple[uuid.UUID, str, bytes], LeadKeyRow] = field(default_factory=dict)
    # When each row was written (contacts, leads, pairs by their key).
    created: dict[object, datetime] = field(default_factory=dict)

    def copy(self) -> Tables:
        return Tables(**{f.name: dict(getattr(self, f.name)) for f in dataclasses.fields(self)})


class FakeRepository:
    """The :class:`Repository` of unit tests (see the module docstring)."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.commits = 0
        self._lock = asyncio.Lock()
        self._faults: list[tuple[str, BaseException]] = []

    def add_webhook(self, workspace_id: uuid.UUID) -> uuid.UUID:
        webhook_id = uuid.uuid4()
        self.tables.webhooks[webhook_id] = workspace_id
        return webhook_id

    def screen(self, webhook_id: uuid.UUID, screening: Screening) -> None:
        """Set a webhook's duplicate-lead window and key and its workspace's suppressed
        mode."""
        self.tables.screening[webhook_id] = screening

    def suppress(self, workspace_id: uuid.UUID, kind: str, value: str) -> None:
        """Put a normalized phone or email on the workspace's suppression list."""
        self.tables.suppressions[(workspace_id, kind, digest(value))] = None

    def add_rule(self, workspace_id: uuid.UUID, rule: BoardRule) -> None:
        """A board rule, after the workspace's others in evaluation order."""
        self.tables.rules.setdefault(workspace_id, []).append(rule)

    def fail(self, operation: str, error: BaseException, *, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` (a :class:`Transaction` method) raise."""
        self._faults += [(operation, error)] * times

    def check_fault(self, operation: str) -> None:
        for i, (name, error) in enumerate(self._faults):
            if name == operation:
                del self._faults[i]
                raise error

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            tables = self.tables.copy()
            yield FakeTransaction(self, tables)
            self.tables = tables
            self.commits += 1

    async def ping(self) -> bool:
        return True

    async def possible_duplicates(
        self, workspace_id: uuid.UUID, *, limit: int
    ) -> list[dict[str, Any]]:
        t = self.tables
        pairs = [(k, p) for k, p in t.pairs.items() if p.workspace_id == workspace_id]
        pairs.sort(key=lambda kp: t.created[kp[0]], reverse=True)
        rows = []
        for n, (key, p) in enumerate(pairs[:limit]):
            row: dict[str, Any] = {
                "pair_id": n + 1,
                "key_type": p.key_type,
                "request_id": p.request_id,
                "created_at": t.created[key],
            }
            for prefix, cid in (("a_", p.contact_id), ("b_", p.other_contact_id)):
                c = t.contacts[cid]
                for name in ("id", *KEY_TYPES, "first_name", "last_name"):
                    row[prefix + name] = getattr(c, name)
            rows.append(row)
        return rows

    async def contact_detail(self, contact_id: uuid.UUID) -> ContactDetail | None:
        t = self.tables
        c = t.contacts.get(contact_id)
        if c is None:
            return None
        row = {f.name: getattr(c, f.name) for f in dataclasses.fields(ContactState)}
        row.update(created_at=t.created[c.id], updated_at=t.created[c.id])
        leads = sorted(
            (x for x in t.leads.values() if x.contact_id == contact_id),
            key=lambda x: t.created[x.id],
            reverse=True,
        )
        pairs = [
            {
                "other": p.other_contact_id if p.contact_id == contact_id else p.contact_id,
                "key_type": p.key_type,
                "created_at": t.created[k],
            }
            for k, p in t.pairs.items()
            if contact_id in (p.contact_id, p.other_contact_id)
        ]
        return ContactDetail(
            contact=row,
            leads=[{**dataclasses.asdict(x), "created_at": t.created[x.id]} for x in leads[:50]],
            possible_duplicates=pairs,
        )


def _snapshot(c: ContactState) -> ContactState:
    """A contact as a fresh read finds it (its keys now are its original keys)."""
    return ContactState(
        id=c.id,
        workspace_id=c.workspace_id,
        **{k: getattr(c, k) for k in KEY_TYPES},
        first_name=c.first_name,
        last_name=c.last_name,
        product=c.product,
        lead_status=c.lead_status,
        custom=dict(c.custom),
        board_id=c.board_id,
        board_name=c.board_name,
    )


def _refuse_nul(*values: object) -> None:
    for value in values:
        if isinstance(value, str) and "\x00" in value:
            raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence: 0x00")


def _unique(rows: Iterable[tuple[object, ...]], what: str) -> None:
    seen: set[tuple[object, ...]] = set()
    for key in rows:
        if key in seen:
            raise asyncpg.UniqueViolationError(f"duplicate key value violates {what}")
        seen.add(key)


class FakeTransaction:
    """One transaction of :class:`FakeRepository`, on its own copy of the tables."""

    def __init__(self, repo: FakeRepository, tables: Tables) -> None:
        self._repo = repo
        self._t = tables

    async def lock_identities(self, keys: Iterable[int]) -> None:
        # One transaction runs at a time (FakeRepository.transaction): nothing to lock.
        self._repo.check_fault("lock_identities")

    async def load_batch(self, query: BatchQuery) -> BatchView:
        self._repo.check_fault("load_batch")
        t = self._t
        wanted = set(query.keys)
        found = [
            c
            for c in t.contacts.values()
            if any((c.workspace_id, k, c.key(k)) in wanted for k in KEY_TYPES)
        ]
        holders = {(x.webhook_id, x.idempotency_key): x.request_id for x in t.leads.values()}
        return BatchView(
            stored={
                r.request_id: StoredRequest(
                    r.request_id, r.status, r.body_sha256, r.result.encode(), r.error
                )
                for r in (t.requests.get(i) for i in query.request_ids)
                if r is not None
            },
            webhooks={w: t.webhooks[w] for w in query.webhook_ids if w in t.webhooks},
            idempotency_holders={p: holders[p] for p in query.idempotency if p in holders},
            contacts=[_snapshot(c) for c in sorted(found, key=lambda c: c.id)],
            rules={w: list(t.rules[w]) for w in query.workspace_ids if w in t.rules},
            screening={w: t.screening[w] for w in query.webhook_ids if w in t.screening},
            suppressed={
                (ws, k, d) for ws, _, k, d in query.digests if (ws, k, d) in t.suppressions
            },
            accepted={
                (w, k, d): t.lead_keys[(w, k, d)].accepted_at
                for _, w, k, d in query.digests
                if (w, k, d) in t.lead_keys and t.screening.get(w, Screening()).window_s
            },
        )

    async def write(
        self,
        contacts: Sequence[ContactState],
        leads: Sequence[LeadRow],
        pairs: Sequence[DuplicatePair] = (),
        keys: Sequence[LeadKeyRow] = (),
    ) -> None:
        # One statement in Postgres; its two halves stay apart here, so a test can fail
        # or slow either ("write_contacts", "write_leads").
        await self.write_contacts(contacts)
        await self.write_leads(leads, pairs, keys)

    async def write_contacts(self, contacts: Sequence[ContactState]) -> None:
        self._repo.check_fault("write_contacts")
        now = utcnow()
        for c in contacts:
            if not c.dirty:
                continue
            _refuse_nul(*(getattr(c, f.name) for f in dataclasses.fields(ContactState)))
            self._t.contacts[c.id] = _snapshot(c)
            self._t.created.setdefault(c.id, now)
        for kind in KEY_TYPES:
            _unique(
                ((c.workspace_id, c.key(kind)) for c in self._t.contacts.values() if c.key(kind)),
                f"contacts_{kind}",
            )

    async def write_leads(
        self,
        leads: Sequence[LeadRow],
        pairs: Sequence[DuplicatePair] = (),
        keys: Sequence[LeadKeyRow] = (),
    ) -> None:
        self._repo.check_fault("write_leads")
        _unique(((k.webhook_id, k.key_type, k.value_sha256) for k in keys), "one statement")
        for k in keys:
            slot = (k.webhook_id, k.key_type, k.value_sha256)
            if slot not in self._t.lead_keys or self._t.lead_keys[slot].accepted_at < k.accepted_at:
                self._t.lead_keys[slot] = k
        now = utcnow()
        for lead in leads:
            _refuse_nul(*dataclasses.astuple(lead))
            self._t.leads[lead.id] = lead
            self._t.created[lead.id] = now
        rows = self._t.leads.values()
        _unique(((x.request_id,) for x in rows), "leads_request_id")
        keyed = [x for x in rows if x.idempotency_key is not None]
        _unique(((x.webhook_id, x.idempotency_key) for x in keyed), "leads_idempotency")
        for p in pairs:
            key = (p.workspace_id, p.contact_id, p.other_contact_id, p.key_type)
            if key not in self._t.pairs:
                self._t.pairs[key] = p
                self._t.created[key] = now

    async def record(self, requests: Sequence[RequestRow]) -> None:
        self._repo.check_fault("record")
        for r in requests:
            _refuse_nul(r.status, r.idempotency_key, r.body_sha256)
            if "\\u0000" in r.result:
                raise asyncpg.UntranslatableCharacterError("unsupported Unicode escape")
            self._t.requests.setdefault(r.request_id, r)
