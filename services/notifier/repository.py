"""The notifier's SQL for its running parts: the :class:`Repository` protocol that the
handler, the dispatcher and the real-time hub use and its asyncpg implementation
(:class:`PgRepository`); the in-memory fake that unit tests use is in
:mod:`~services.notifier.fake_repository`, and the SQL the CLI drives through
:mod:`services.notifier.admin` (a workspace's settings and token, re-queueing
dead-lettered sends) in :mod:`~services.notifier.admin_repository`.

The send ledger (``notification_sends``, migration 030) is the notifier's queue and its
memory: a row per (event, channel, recipient), unique, so inserting the rows of a
redelivered or replayed event does nothing (``ON CONFLICT DO NOTHING``), and a row once
'sent' or 'dead' is never claimed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import asyncpg
import orjson

from services.notifier.ledger import (
    INTERRUPTED,
    REALTIME_CHANNEL,
    ClaimedSend,
    DeadSend,
    NewSend,
    WorkspaceConfig,
    deadletter_entry,
    interrupted_entries,
    split_kinds,
)

#: Publishes one dead-letter entry (to Kafka); raising stops a publishing round.
PublishEntry = Callable[[dict[str, Any]], Awaitable[None]]


class RealtimeAccess(NamedTuple):
    """What opens a workspace's real-time room now: its token's hash (None: no token) and
    whether the workspace is active (a disabled workspace's token opens nothing)."""

    token_hash: str | None
    active: bool


#: A suppression-list entry: (workspace id, "phone" | "email", sha256 of the value).
Suppression = tuple[uuid.UUID, str, bytes]


class Repository(Protocol):
    """What the notifier's handler, dispatcher and real-time hub need from storage."""

    async def ping(self) -> bool: ...

    async def workspace_configs(
        self, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WorkspaceConfig]: ...

    async def workspaces_with_rule(self, event: str) -> dict[uuid.UUID, WorkspaceConfig]:
        """Every workspace whose stored rules name ``event`` (e.g. ``system_health``)."""
        ...

    async def suppressed(self, entries: Sequence[Suppression]) -> set[Suppression]:
        """Which (workspace, kind, sha256) entries are on their workspace's suppression
        list (shared.suppression)."""
        ...

    async def realtime_access(
        self, workspace_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, RealtimeAccess]:
        """Each workspace's token hash and status (a workspace that does not exist is
        missing): read on connect, and every second for the live sessions."""
        ...

    async def record(
        self,
        sends: Sequence[NewSend],
        realtime_notices: Mapping[tuple[uuid.UUID, str], str],
    ) -> int: ...

    async def claim_batches(
        self,
        *,
        claim_id: uuid.UUID,
        batch_size: int,
        window_s: float,
        lease_s: float,
        max_batches: int,
    ) -> list[ClaimedSend]: ...

    async def mark_sent(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, provider_ref: str | None
    ) -> list[tuple[uuid.UUID, datetime, datetime]]: ...

    async def mark_retry(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, error: str, delay_s: float
    ) -> int: ...

    async def mark_dead(
        self,
        ids: Sequence[uuid.UUID],
        *,
        claim_id: uuid.UUID,
        error: str,
        reason: str,
        failed_at: datetime,
    ) -> dict[str, Any] | None: ...

    async def recover_interrupted(self, *, failed_at: datetime) -> list[dict[str, Any]]: ...

    async def publish_deadletters(self, publish: PublishEntry, *, limit: int = 100) -> int: ...

    async def queue_depth(self) -> dict[str, int]: ...

    async def prune(self, *, older_than_s: float, limit: int = 5000) -> int: ...


# --- Postgres -------------------------------------------------------------------------


class PgRepository:
    """The notifier's tables in Postgres, through a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ping(self) -> bool:
        return bool(await self._pool.fetchval("SELECT 1"))

    # --- configuration ----------------------------------------------------------------

    async def workspace_configs(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WorkspaceConfig]:
        rows = await self._pool.fetch(
            """SELECT w.id, w.name, ns.settings
               FROM unnest($1::uuid[]) AS q(id)
               LEFT JOIN workspaces w ON w.id = q.id
               LEFT JOIN notification_settings ns ON ns.workspace_id = q.id
               WHERE w.id IS NOT NULL""",
            list(ids),
        )
        return {r["id"]: WorkspaceConfig(r["id"], r["name"], r["settings"]) for r in rows}

    async def suppressed(self, entries: Sequence[Suppression]) -> set[Suppression]:
        if not entries:
            return set()
        rows = await self._pool.fetch(
            """SELECT s.workspace_id, s.kind, s.value_sha256 FROM suppressions s
                 JOIN unnest($1::uuid[], $2::text[], $3::bytea[]) AS q(ws, kind, h)
                   ON s.workspace_id = q.ws AND s.kind = q.kind AND s.value_sha256 = q.h""",
            *(list(column) for column in zip(*entries, strict=True)),
        )
        return {(r["workspace_id"], r["kind"], bytes(r["value_sha256"])) for r in rows}

    async def workspaces_with_rule(self, event: str) -> dict[uuid.UUID, WorkspaceConfig]:
        rows = await self._pool.fetch(
            """SELECT w.id, w.name, ns.settings
               FROM notification_settings ns JOIN workspaces w ON w.id = ns.workspace_id
               WHERE ns.settings -> 'rules' @> jsonb_build_array(jsonb_build_object('event', $1::text))""",
            event,
        )
        return {r["id"]: WorkspaceConfig(r["id"], r["name"], r["settings"]) for r in rows}

    async def realtime_access(
        self, workspace_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, RealtimeAccess]:
        rows = await self._pool.fetch(
            """SELECT w.id, ns.realtime_token_hash, w.status = 'active' AS active
               FROM workspaces w
               LEFT JOIN notification_settings ns ON ns.workspace_id = w.id
               WHERE w.id = ANY($1::uuid[])""",
            list(workspace_ids),
        )
        return {
            r["id"]: RealtimeAccess(r["realtime_token_hash"] or None, bool(r["active"]))
            for r in rows
        }

    # --- recording (consumer side) ----------------------------------------------------

    async def record(
        self,
        sends: Sequence[NewSend],
        realtime_notices: Mapping[tuple[uuid.UUID, str], str],
    ) -> int:
        """Insert every send in one transaction; publish the real-time notices of the
        real-time rows that are new (a repeat of an event publishes nothing).

        Idempotent: the unique (event_id, channel, recipient) key turns a repeat into a
        no-op. Email and SMS rows start 'pending'; real-time rows are 'sent' at once, and
        their pg_notify is delivered only if this transaction commits. Returns the number
        of new email/SMS rows.
        """
        if not sends:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetch(
                """INSERT INTO notification_sends
                       (id, event_id, workspace_id, channel, recipient, kinds, summary,
                        event_at, status, sent_at)
                   SELECT i, e, w, c, r, k, s::jsonb, t,
                          CASE WHEN c = 'realtime' THEN 'sent' ELSE 'pending' END,
                          CASE WHEN c = 'realtime' THEN now() END
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                               $6::text[], $7::text[], $8::timestamptz[])
                        AS x(i, e, w, c, r, k, s, t)
                   ON CONFLICT (event_id, channel, recipient) DO NOTHING
                   RETURNING event_id, channel, recipient""",
                [uuid.uuid4() for _ in sends],
                [s.event_id for s in sends],
                [s.workspace_id for s in sends],
                [s.channel for s in sends],
                [s.recipient for s in sends],
                [",".join(s.kinds) for s in sends],
                [orjson.dumps(s.summary, default=str).decode() for s in sends],
                [s.event_at for s in sends],
            )
            notices = [
                realtime_notices[(r["event_id"], r["recipient"])]
                for r in inserted
                if r["channel"] == "realtime"
                and (r["event_id"], r["recipient"]) in realtime_notices
            ]
            if notices:
                await conn.execute(
                    "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
                    REALTIME_CHANNEL,
                    notices,
                )
        return sum(1 for r in inserted if r["channel"] != "realtime")

    # --- dispatching ------------------------------------------------------------------

    async def claim_batches(
        self,
        *,
        claim_id: uuid.UUID,
        batch_size: int,
        window_s: float,
        lease_s: float,
        max_batches: int,
        scan: int = 1000,
    ) -> list[ClaimedSend]:
        """Claim the rows of every batch that is ready to go, at most ``batch_size`` per
        (workspace, channel, recipient), oldest first.

        A batch is ready when it is full, when its oldest row has waited ``window_s``, or
        when it holds a retry that is due; at most ``max_batches`` batches. Claimed rows are 'sending' under ``claim_id``
        with a lease; the attempt is counted here, before the provider is called.
        ``SKIP LOCKED`` lets several notifiers share the queue.
        """
        rows = await self._pool.fetch(
            """WITH due AS (
                   SELECT id, workspace_id, channel, recipient, attempts, created_at, event_at
                   FROM notification_sends
                   WHERE status = 'pending' AND next_attempt_at <= now()
                   ORDER BY next_attempt_at
                   LIMIT $5
                   FOR UPDATE SKIP LOCKED
               ), ranked AS (
                   SELECT id, workspace_id, channel, recipient,
                          row_number() OVER (PARTITION BY workspace_id, channel, recipient
                                             ORDER BY attempts DESC, created_at, event_at, id) AS rn,
                          count(*) OVER g AS n,
                          bool_or(attempts > 0) OVER g AS retrying,
                          min(created_at) OVER g AS oldest
                   FROM due
                   WINDOW g AS (PARTITION BY workspace_id, channel, recipient)
               ), ready AS (
                   SELECT id,
                          dense_rank() OVER (ORDER BY oldest, workspace_id, channel, recipient) AS grp
                   FROM ranked
                   WHERE rn <= $2
                     AND (n >= $2 OR retrying OR oldest <= now() - make_interval(secs => $3))
               )
               UPDATE notification_sends s
               SET status = 'sending', attempts = s.attempts + 1, claim_id = $1,
                   claimed_until = now() + make_interval(secs => $4)
               FROM ready r
               WHERE s.id = r.id AND r.grp <= $6
               RETURNING s.id, s.event_id, s.workspace_id, s.channel, s.recipient, s.kinds,
                         s.summary, s.attempts, s.event_at""",
            claim_id,
            batch_size,
            float(window_s),
            float(lease_s),
            scan,
            max_batches,
        )
        return [
            ClaimedSend(
                id=r["id"],
                event_id=r["event_id"],
                workspace_id=r["workspace_id"],
                channel=r["channel"],
                recipient=r["recipient"],
                kinds=split_kinds(r["kinds"]),
                summary=r["summary"],
                attempts=r["attempts"],
                event_at=r["event_at"],
            )
            for r in rows
        ]

    async def mark_sent(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, provider_ref: str | None
    ) -> list[tuple[uuid.UUID, datetime, datetime]]:
        """Mark claimed rows sent; returns (id, event_at, sent_at) of the rows marked.

        Guarded by the claim: a row whose lease ran out and was recovered by another
        dispatcher is not touched (it is already dead-lettered as interrupted).
        """
        rows = await self._pool.fetch(
            """UPDATE notification_sends
               SET status = 'sent', sent_at = now(), provider_ref = $3, last_error = NULL,
                   claim_id = NULL, claimed_until = NULL
               WHERE id = ANY($1::uuid[]) AND claim_id = $2 AND status = 'sending'
               RETURNING id, event_at, sent_at""",
            list(ids),
            claim_id,
            provider_ref,
        )
        return [(r["id"], r["event_at"], r["sent_at"]) for r in rows]

    async def mark_retry(
        self, ids: Sequence[uuid.UUID], *, claim_id: uuid.UUID, error: str, delay_s: float
    ) -> int:
        result = await self._pool.execute(
            """UPDATE notification_sends
               SET status = 'pending', last_error = $3,
                   next_attempt_at = now() + make_interval(secs => $4),
                   claim_id = NULL, claimed_until = NULL
               WHERE id = ANY($1::uuid[]) AND claim_id = $2 AND status = 'sending'""",
            list(ids),
            claim_id,
            error,
            float(delay_s),
        )
        return int(result.split()[-1])

    async def mark_dead(
        self,
        ids: Sequence[uuid.UUID],
        *,
        claim_id: uuid.UUID,
        error: str,
        reason: str,
        failed_at: datetime,
    ) -> dict[str, Any] | None:
        """Mark claimed rows dead and, in the same transaction, write their dead-letter
        entry to the outbox. Returns the entry (None if the claim was lost)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE notification_sends
                   SET status = 'dead', dead_at = now(), last_error = $3,
                       claim_id = NULL, claimed_until = NULL
                   WHERE id = ANY($1::uuid[]) AND claim_id = $2 AND status = 'sending'
                   RETURNING id, event_id, workspace_id, channel, recipient, kinds, attempts,
                             last_error, $2::uuid AS claim_id""",
                list(ids),
                claim_id,
                error,
            )
            if not rows:
                return None
            entry = deadletter_entry([_dead(r) for r in rows], reason=reason, failed_at=failed_at)
            await self._insert_deadletter(conn, entry)
            return entry

    async def recover_interrupted(self, *, failed_at: datetime) -> list[dict[str, Any]]:
        """Dead-letter rows whose dispatcher died mid-send (lease ran out).

        The provider may or may not have accepted them, so they are not sent again
        (that could send twice); their dead-letter entry says 'interrupted' and carries
        what an operator needs to re-drive them.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """WITH stale AS (
                       SELECT id, claim_id FROM notification_sends
                       WHERE status = 'sending' AND claimed_until < now()
                       FOR UPDATE SKIP LOCKED
                   )
                   UPDATE notification_sends s
                   SET status = 'dead', dead_at = now(),
                       last_error = coalesce(s.last_error || '; ', '') || $1,
                       claim_id = NULL, claimed_until = NULL
                   FROM stale
                   WHERE s.id = stale.id
                   RETURNING s.id, s.event_id, s.workspace_id, s.channel, s.recipient, s.kinds,
                             s.attempts, s.last_error, stale.claim_id""",
                INTERRUPTED,
            )
            entries = interrupted_entries([_dead(r) for r in rows], failed_at=failed_at)
            for entry in entries:
                await self._insert_deadletter(conn, entry)
            return entries

    @staticmethod
    async def _insert_deadletter(conn: asyncpg.Connection, entry: dict[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO notification_deadletters (id, entry) VALUES ($1, $2)",
            uuid.UUID(entry["deadletter_id"]),
            entry,  # the pool's jsonb codec encodes it
        )

    async def publish_deadletters(self, publish: PublishEntry, *, limit: int = 100) -> int:
        """Publish unpublished dead-letter entries with ``publish`` and mark them.

        The rows are locked while they are published (``SKIP LOCKED``), so two dispatchers
        (or two tasks of one) never publish the same entry. ``publish`` raising stops the
        round; what was published before is still marked.
        """
        done: list[uuid.UUID] = []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, entry FROM notification_deadletters WHERE published_at IS NULL
                   ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
                limit,
            )
            try:
                for r in rows:
                    await publish(r["entry"])
                    done.append(r["id"])
            finally:
                if done:
                    await conn.execute(
                        "UPDATE notification_deadletters SET published_at = now() WHERE id = ANY($1::uuid[])",
                        done,
                    )
        return len(done)

    async def queue_depth(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            """SELECT channel, count(*) AS n FROM notification_sends
               WHERE status IN ('pending', 'sending') GROUP BY channel"""
        )
        return {r["channel"]: int(r["n"]) for r in rows}

    async def prune(self, *, older_than_s: float, limit: int = 5000) -> int:
        """Forget finished sends (and their contact details) past the retention period."""
        result = await self._pool.execute(
            """DELETE FROM notification_sends WHERE id IN (
                   SELECT id FROM notification_sends
                   WHERE created_at < now() - make_interval(secs => $1)
                     AND status IN ('sent', 'dead')
                   LIMIT $2)""",
            float(older_than_s),
            limit,
        )
        await self._pool.execute(
            """DELETE FROM notification_deadletters
               WHERE published_at IS NOT NULL AND created_at < now() - make_interval(secs => $1)""",
            float(older_than_s),
        )
        return int(result.split()[-1])


def _dead(r: asyncpg.Record) -> DeadSend:
    return DeadSend(
        id=r["id"],
        event_id=r["event_id"],
        workspace_id=r["workspace_id"],
        channel=r["channel"],
        recipient=r["recipient"],
        kinds=split_kinds(r["kinds"]),
        attempts=r["attempts"],
        last_error=r["last_error"],
        claim_id=r["claim_id"],
    )
