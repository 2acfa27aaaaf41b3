"""Unkeyed requests whose 503 may not be the whole truth.

A publish that times out may still reach Kafka later: the idempotent producer keeps
retrying a buffered batch until the broker answers. Such a 503 is indeterminate, and a
vendor that retries it without an idempotency key would make a second lead. So for a
while (``indeterminate_ttl_s``) the gateway remembers (webhook, body hash) -> request id of
every indeterminate 503, in this process and in Postgres (other workers hear of it through
a notification and start looking); a byte-identical unkeyed retry reuses that request id,
and the processor, which keeps one lead per request id, stores it once. Outside such a
window the lookup costs nothing: no query on the hot path.
"""

from __future__ import annotations

import time
import uuid

import asyncpg

from shared.logs import get_logger

log = get_logger(__name__)

CHANNEL = "leadwire_ingest_indeterminate"

_RECORD = """
WITH purged AS (DELETE FROM ingest_indeterminate WHERE created_at < now() - interval '1 day')
INSERT INTO ingest_indeterminate (webhook_id, body_sha256, request_id) VALUES ($1, $2, $3)
ON CONFLICT (webhook_id, body_sha256) DO UPDATE
    SET request_id = EXCLUDED.request_id, created_at = now()
    WHERE ingest_indeterminate.created_at < now() - make_interval(secs => $4)
"""
_LOOKUP = """
SELECT request_id FROM ingest_indeterminate
WHERE webhook_id = $1 AND body_sha256 = $2 AND created_at > now() - make_interval(secs => $3)
"""

_RECENT = """
SELECT EXISTS (SELECT 1 FROM ingest_indeterminate WHERE created_at > now() - make_interval(secs => $1))
"""

Key = tuple[uuid.UUID, str]


class Indeterminate:
    def __init__(self, ttl_s: float = 900.0) -> None:
        self._ttl = ttl_s
        self._local: dict[Key, tuple[uuid.UUID, float]] = {}
        self._active_until = 0.0

    def activate(self) -> None:
        """Some gateway answered an indeterminate 503: look retries up for a while."""
        self._active_until = time.monotonic() + self._ttl

    def remember(self, webhook_id: uuid.UUID, body_sha: str, request_id: uuid.UUID) -> None:
        now = time.monotonic()
        self._local = {k: v for k, v in self._local.items() if now - v[1] < self._ttl}
        self._local.setdefault((webhook_id, body_sha), (request_id, now))
        self.activate()

    async def catch_up(self, pool: asyncpg.Pool) -> None:
        """At start: open the window if another worker recorded one recently."""
        try:
            recent = await pool.fetchval(_RECENT, self._ttl, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            recent = True  # cannot tell: look retries up for a while
        if recent:
            self.activate()

    async def record(
        self, pool: asyncpg.Pool | None, webhook_id: uuid.UUID, body_sha: str, request_id: uuid.UUID
    ) -> None:
        """Share it with the other workers (best effort: Postgres may be away too)."""
        if pool is None:
            return
        try:
            async with pool.acquire(timeout=2) as conn, conn.transaction():
                await conn.execute(_RECORD, webhook_id, body_sha, request_id, self._ttl, timeout=2)
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("indeterminate_not_shared", error=type(exc).__name__)

    async def lookup(
        self, pool: asyncpg.Pool | None, webhook_id: uuid.UUID, body_sha: str
    ) -> uuid.UUID | None:
        """The request id an earlier indeterminate 503 gave this body, if any."""
        if time.monotonic() > self._active_until:
            return None
        hit = self._local.get((webhook_id, body_sha))
        if hit is not None and time.monotonic() - hit[1] < self._ttl:
            return hit[0]
        if pool is None:
            return None
        try:
            found: uuid.UUID | None = await pool.fetchval(
                _LOOKUP, webhook_id, body_sha, self._ttl, timeout=2
            )
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        return found
