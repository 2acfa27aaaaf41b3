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

from services.ingest.repository import Repository
from shared.logs import get_logger

log = get_logger(__name__)

# Postgres unreachable or slow: the lookup is best effort, the request goes on.
_UNAVAILABLE = (OSError, asyncpg.PostgresError, TimeoutError)

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

    async def catch_up(self, repo: Repository) -> None:
        """At start: open the window if another worker recorded one recently."""
        try:
            recent = await repo.any_indeterminate(ttl_s=self._ttl)
        except _UNAVAILABLE:
            recent = True  # cannot tell: look retries up for a while
        if recent:
            self.activate()

    async def record(
        self,
        repo: Repository | None,
        webhook_id: uuid.UUID,
        body_sha: str,
        request_id: uuid.UUID,
    ) -> None:
        """Share it with the other workers (best effort: Postgres may be away too)."""
        if repo is None:
            return
        try:
            await repo.record_indeterminate(webhook_id, body_sha, request_id, ttl_s=self._ttl)
        except _UNAVAILABLE as exc:
            log.warning("indeterminate_not_shared", error=type(exc).__name__)

    async def lookup(
        self, repo: Repository | None, webhook_id: uuid.UUID, body_sha: str
    ) -> uuid.UUID | None:
        """The request id an earlier indeterminate 503 gave this body, if any."""
        if time.monotonic() > self._active_until:
            return None
        hit = self._local.get((webhook_id, body_sha))
        if hit is not None and time.monotonic() - hit[1] < self._ttl:
            return hit[0]
        if repo is None:
            return None
        try:
            return await repo.indeterminate_request(webhook_id, body_sha, ttl_s=self._ttl)
        except _UNAVAILABLE:
            return None
