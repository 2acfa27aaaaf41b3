"""The notifier's :class:`~services.notifier.repository.Repository` in memory, for unit
tests: the same ledger rules as the Postgres implementation, no database. It lives beside
``repository.py`` (which holds the protocol and the SQL) to keep both short.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.notifier.ledger import (
    INTERRUPTED,
    ClaimedSend,
    DeadSend,
    NewSend,
    WorkspaceConfig,
    deadletter_entry,
    interrupted_entries,
    token_hash,
)
from services.notifier.repository import PublishEntry, RealtimeAccess, Suppression
from shared.events import utcnow


@dataclass
class _Row:
    send: NewSend
    id: uuid.UUID
    created_at: datetime
    next_attempt_at: datetime
    status: str = "pending"
    attempts: int = 0
    claim_id: uuid.UUID | None = None
    claimed_until: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    provider_ref: str | None = None

    def claimed(self) -> ClaimedSend:
        s = self.send
        return ClaimedSend(
            self.id,
            s.event_id,
            s.workspace_id,
            s.channel,
            s.recipient,
            tuple(s.kinds),
            s.summary,
            self.attempts,
            s.event_at,
        )

    def dead(self, claim_id: uuid.UUID | None) -> DeadSend:
        s = self.send
        return DeadSend(
            self.id,
            s.event_id,
            s.workspace_id,
            s.channel,
            s.recipient,
            tuple(s.kinds),
            self.attempts,
            self.last_error,
            claim_id,
        )


@dataclass
class _Entry:
    entry: dict[str, Any]
    created_at: datetime
    published: bool = False


class FakeRepository:
    """The :class:`Repository` in memory, with the ledger's rules: one row per (event,
    channel, recipient), claims count the attempt and hold a lease, only the claim's
    holder marks its rows, dead-letter entries go through an outbox. ``now`` is the clock
    (move it to expire windows, retries and leases). ``notices`` are the real-time pushes
    published, ``published`` the dead-letter entries handed to ``publish``."""

    def __init__(self, *, now: Callable[[], datetime] = utcnow) -> None:
        self.now = now
        self.workspaces: dict[uuid.UUID, WorkspaceConfig] = {}
        # The suppression list (workspace, kind, sha256), as the suppressions table.
        self.suppressions: set[Suppression] = set()
        self.token_hashes: dict[uuid.UUID, str] = {}
        self.disabled: set[uuid.UUID] = set()  # workspaces whose status is not active
        self.rows: dict[tuple[uuid.UUID, str, str], _Row] = {}
        self.notices: list[str] = []
        self.outbox: list[_Entry] = []
        self.published: list[dict[str, Any]] = []

    def add_workspace(
        self,
        name: str | None = None,
        *,
        settings: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> uuid.UUID:
        workspace_id = uuid.uuid4()
        self.workspaces[workspace_id] = WorkspaceConfig(workspace_id, name, settings)
        if token is not None:
            self.token_hashes[workspace_id] = token_hash(token)
        return workspace_id

    def statuses(self) -> dict[tuple[uuid.UUID, str, str], str]:
        return {key: row.status for key, row in self.rows.items()}

    async def ping(self) -> bool:
        return True

    async def workspace_configs(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WorkspaceConfig]:
        return {i: self.workspaces[i] for i in ids if i in self.workspaces}

    async def suppressed(self, entries: Sequence[Suppression]) -> set[Suppression]:
        return {e for e in entries if e in self.suppressions}

    async def workspaces_with_rule(self, event: str) -> dict[uuid.UUID, WorkspaceConfig]:
        return {
            i: w
            for i, w in self.workspaces.items()
            if any(r.get("event") == event for r in (w.settings or {}).get("rules", []))
        }

    async def realtime_access(
        self, workspace_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, RealtimeAccess]:
        return {
            i: RealtimeAccess(self.token_hashes.get(i), i not in self.disabled)
            for i in workspace_ids
            if i in self.workspaces
        }

    async def record(
        self,
        sends: Sequence[NewSend],
        realtime_notices: Mapping[tuple[uuid.UUID, str], str],
    ) -> int:
        new = 0
        now = self.now()
        for s in sends:
            key = (s.event_id, s.channel, s.recipient)
            if key in self.rows:
                continue
            row = _Row(s, uuid.uuid4(), now, now)
            self.rows[key] = row
            if s.channel == "realtime":
                row.status, row.sent_at = "sent", now
                notice = realtime_notices.get((s.event_id, s.recipient))
                if notice is not None:
                    self.notices.append(notice)
            else:
                new += 1
        return new

    async def claim_batches(
        self,
        *,
        claim_id: uuid.UUID,
        batch_size: int,
        window_s: float,
        lease_s: float,
        max_batches: int,
    ) -> list[ClaimedSend]:
        now = self.now()
        due = [r for r in self.rows.values() if r.status == "pending" and r.next_attempt_at <= now]
        due.sort(key=lambda r: (-r.attempts, r.created_at, r.send.event_at))
        groups: dict[tuple[uuid.UUID, str, str], list[_Row]] = {}
        for r in due:
            groups.setdefault((r.send.workspace_id, r.send.channel, r.send.recipient), []).append(r)
        ready = [
            g
            for g in groups.values()
            if len(g) >= batch_size
            or any(r.attempts > 0 for r in g)
            or min(r.created_at for r in g) <= now - timedelta(seconds=window_s)
        ]
        ready.sort(key=lambda g: min(r.created_at for r in g))
        claimed: list[ClaimedSend] = []
        for group in ready[:max_batches]:
            for r in group[:batch_size]:
                r.status, r.attempts, r.claim_id = "sending", r.attempts + 1, claim_id
                r.claimed_until = now + timedelta(seconds=lease_s)
                claimed.append(r.claimed())
        return claimed

    def _held(self, ids: Sequence[uuid.UUID], claim_id: uuid.UUID) -> list[_Row]:
        wanted = set(ids)
        return [
            r
            for r in self.rows.values()
            if r.id in wanted and r.claim_id == claim_id and r.status == "sending"
        ]

    async def mark_sent(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, provider_ref: str | None
    ) -> list[tuple[uuid.UUID, datetime, datetime]]:
        now = self.now()
        marked = []
        for r in self._held(ids, claim_id):
            r.status, r.sent_at, r.provider_ref, r.last_error = "sent", now, provider_ref, None
            r.claim_id = r.claimed_until = None
            marked.append((r.id, r.send.event_at, now))
        return marked

    async def mark_retry(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, error: str, delay_s: float
    ) -> int:
        held = self._held(ids, claim_id)
        for r in held:
            r.status, r.last_error = "pending", error
            r.next_attempt_at = self.now() + timedelta(seconds=delay_s)
            r.claim_id = r.claimed_until = None
        return len(held)

    async def mark_dead(
        self,
        ids: Sequence[uuid.UUID],
        *,
        claim_id: uuid.UUID,
        error: str,
        reason: str,
        failed_at: datetime,
    ) -> dict[str, Any] | None:
        held = self._held(ids, claim_id)
        if not held:
            return None
        for r in held:
            r.status, r.last_error = "dead", error
            r.claim_id = r.claimed_until = None
        entry = deadletter_entry(
            [r.dead(claim_id) for r in held], reason=reason, failed_at=failed_at
        )
        self.outbox.append(_Entry(entry, self.now()))
        return entry

    async def recover_interrupted(self, *, failed_at: datetime) -> list[dict[str, Any]]:
        now = self.now()
        dead: list[DeadSend] = []
        for r in self.rows.values():
            if r.status == "sending" and r.claimed_until is not None and r.claimed_until < now:
                r.status = "dead"
                r.last_error = f"{r.last_error}; {INTERRUPTED}" if r.last_error else INTERRUPTED
                dead.append(r.dead(r.claim_id))
                r.claim_id = r.claimed_until = None
        entries = interrupted_entries(dead, failed_at=failed_at)
        self.outbox.extend(_Entry(e, now) for e in entries)
        return entries

    async def publish_deadletters(self, publish: PublishEntry, *, limit: int = 100) -> int:
        done = 0
        for item in [e for e in self.outbox if not e.published][:limit]:
            await publish(item.entry)
            item.published = True
            self.published.append(item.entry)
            done += 1
        return done

    async def queue_depth(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for r in self.rows.values():
            if r.status in ("pending", "sending"):
                depth[r.send.channel] = depth.get(r.send.channel, 0) + 1
        return depth

    async def prune(self, *, older_than_s: float, limit: int = 5000) -> int:
        cutoff = self.now() - timedelta(seconds=older_than_s)
        old = [
            key
            for key, r in self.rows.items()
            if r.created_at < cutoff and r.status in ("sent", "dead")
        ][:limit]
        for key in old:
            del self.rows[key]
        self.outbox = [e for e in self.outbox if not (e.published and e.created_at < cutoff)]
        return len(old)
