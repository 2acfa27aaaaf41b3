"""The gateway's SQL, in one place: webhook config, request status, rejection records and
the indeterminate-503 table (``ingest_indeterminate``, see indeterminate.py).

:class:`Repository` is what the gateway needs; :class:`PgRepository` does it on an
asyncpg pool (every call bounded by ``timeout`` seconds); :class:`FakeRepository` keeps
it in dictionaries, for unit tests.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

import asyncpg
import orjson

from shared.events import LeadFailed, LeadRejected, encode

#: Postgres notification channel: a gateway answered an indeterminate 503.
INDETERMINATE_CHANNEL = "leadwire_ingest_indeterminate"

_CONFIG = """
SELECT w.id, w.workspace_id, w.name, w.template, w.auth_mode, w.secret, w.secret_previous,
       w.secret_previous_expires_at, w.basic_username, w.api_key_header, w.status,
       w.rate_limit_per_minute, w.max_body_bytes, w.idempotency_field, w.mapping,
       w.verify_token, w.acceptance, w.facebook_page_token,
       ws.status AS workspace_status, ws.default_region
FROM webhooks w JOIN workspaces ws ON ws.id = w.workspace_id
WHERE w.id = $1
"""

_REQUEST = """
SELECT request_id, workspace_id, webhook_id, status, received_at, processed_at,
       body_sha256, result, error
FROM webhook_requests WHERE request_id = $1
"""

_REQUESTS = """
SELECT request_id, workspace_id, webhook_id, status, received_at, processed_at,
       body_sha256, result, error
FROM webhook_requests WHERE request_id = ANY($1::uuid[])
"""

_INSERT_REJECTED = """
INSERT INTO webhook_requests
    (request_id, workspace_id, webhook_id, status, received_at, processed_at,
     idempotency_key, body_sha256, result, steps, error)
VALUES ($1, $2, $3, 'rejected', $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (request_id) DO NOTHING
"""

# A lead the gateway could not fetch (facebook fetcher): failed, with no result, so the
# processor still takes it when a retry of the fetch succeeds (it overwrites the row).
_INSERT_FAILED = """
INSERT INTO webhook_requests
    (request_id, workspace_id, webhook_id, status, received_at, processed_at,
     idempotency_key, body_sha256, steps, error)
VALUES ($1, $2, $3, 'failed', $4, $5, $6, $7, $8, $9)
ON CONFLICT (request_id) DO UPDATE
    SET status = 'failed', processed_at = EXCLUDED.processed_at, error = EXCLUDED.error
    WHERE webhook_requests.result IS NULL
"""

_RECORD_INDETERMINATE = """
WITH purged AS (DELETE FROM ingest_indeterminate WHERE created_at < now() - interval '1 day')
INSERT INTO ingest_indeterminate (webhook_id, body_sha256, request_id) VALUES ($1, $2, $3)
ON CONFLICT (webhook_id, body_sha256) DO UPDATE
    SET request_id = EXCLUDED.request_id, created_at = now()
    WHERE ingest_indeterminate.created_at < now() - make_interval(secs => $4)
"""

_INDETERMINATE_REQUEST = """
SELECT request_id FROM ingest_indeterminate
WHERE webhook_id = $1 AND body_sha256 = $2 AND created_at > now() - make_interval(secs => $3)
"""

_ANY_INDETERMINATE = """
SELECT EXISTS (SELECT 1 FROM ingest_indeterminate WHERE created_at > now() - make_interval(secs => $1))
"""


def _rejected_row(
    event: LeadRejected, idempotency_key: str | None, body_sha256: str
) -> dict[str, Any]:
    """The columns of a rejection's ``webhook_requests`` row (in ``_INSERT_REJECTED``'s order)."""
    return {
        "request_id": event.request_id,
        "workspace_id": event.workspace_id,
        "webhook_id": event.webhook_id,
        "received_at": event.received_at,
        "processed_at": event.occurred_at,
        "idempotency_key": idempotency_key,
        "body_sha256": body_sha256,
        "result": orjson.loads(encode(event)),
        "steps": event.processing.steps,
        "error": {"type": event.reason, "message": f"rejected with {event.status_code}"},
    }


def _failed_row(event: LeadFailed, idempotency_key: str | None) -> dict[str, Any]:
    """The columns of a fetch failure's ``webhook_requests`` row (``_INSERT_FAILED``'s order)."""
    return {
        "request_id": event.request_id,
        "workspace_id": event.workspace_id,
        "webhook_id": event.webhook_id,
        "received_at": event.received_at,
        "processed_at": event.occurred_at,
        "idempotency_key": idempotency_key,
        "body_sha256": None,
        "steps": event.processing.steps,
        "error": event.error.model_dump(),
    }


class Repository(Protocol):
    async def webhook_config(self, webhook_id: uuid.UUID) -> dict[str, Any] | None:
        """The joined webhooks/workspaces row of a webhook (see config.build_config)."""

    async def request(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        """A request's ``webhook_requests`` row."""

    async def requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The rows of those requests that have one."""

    async def insert_rejected(
        self, event: LeadRejected, *, idempotency_key: str | None, body_sha256: str
    ) -> None:
        """Store a rejection's status row (idempotent: a repeat does nothing); its result
        is the event as published."""

    async def insert_failed(self, event: LeadFailed, *, idempotency_key: str | None) -> None:
        """Store a lead the gateway could not fetch as ``failed`` (its error, no result);
        a row with a result (finished) is left alone."""

    async def record_indeterminate(
        self, webhook_id: uuid.UUID, body_sha: str, request_id: uuid.UUID, *, ttl_s: float
    ) -> None:
        """Remember (webhook, body) -> request id of an indeterminate 503, and tell the
        other gateway processes (``INDETERMINATE_CHANNEL``)."""

    async def indeterminate_request(
        self, webhook_id: uuid.UUID, body_sha: str, *, ttl_s: float
    ) -> uuid.UUID | None:
        """The request id an indeterminate 503 gave this body in the last ``ttl_s``."""

    async def any_indeterminate(self, *, ttl_s: float) -> bool:
        """Whether any gateway answered an indeterminate 503 in the last ``ttl_s``."""


class PgRepository:
    """:class:`Repository` on an asyncpg pool; every call bounded by ``timeout`` seconds."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 2.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def webhook_config(self, webhook_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(_CONFIG, webhook_id, timeout=self._timeout)
        return dict(row) if row is not None else None

    async def request(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(_REQUEST, request_id, timeout=self._timeout)
        return dict(row) if row is not None else None

    async def requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        rows = await self._pool.fetch(_REQUESTS, request_ids, timeout=self._timeout)
        return {row["request_id"]: dict(row) for row in rows}

    async def insert_rejected(
        self, event: LeadRejected, *, idempotency_key: str | None, body_sha256: str
    ) -> None:
        # Idempotent: a rejection id is random and inserted once; a repeat does nothing.
        await self._pool.execute(
            _INSERT_REJECTED,
            *_rejected_row(event, idempotency_key, body_sha256).values(),
            timeout=self._timeout,
        )

    async def insert_failed(self, event: LeadFailed, *, idempotency_key: str | None) -> None:
        await self._pool.execute(
            _INSERT_FAILED, *_failed_row(event, idempotency_key).values(), timeout=self._timeout
        )

    async def record_indeterminate(
        self, webhook_id: uuid.UUID, body_sha: str, request_id: uuid.UUID, *, ttl_s: float
    ) -> None:
        timeout = self._timeout
        async with self._pool.acquire(timeout=timeout) as conn, conn.transaction():
            await conn.execute(
                _RECORD_INDETERMINATE, webhook_id, body_sha, request_id, ttl_s, timeout=timeout
            )
            await conn.execute("SELECT pg_notify($1, '')", INDETERMINATE_CHANNEL, timeout=timeout)

    async def indeterminate_request(
        self, webhook_id: uuid.UUID, body_sha: str, *, ttl_s: float
    ) -> uuid.UUID | None:
        found: uuid.UUID | None = await self._pool.fetchval(
            _INDETERMINATE_REQUEST, webhook_id, body_sha, ttl_s, timeout=self._timeout
        )
        return found

    async def any_indeterminate(self, *, ttl_s: float) -> bool:
        return bool(await self._pool.fetchval(_ANY_INDETERMINATE, ttl_s, timeout=self._timeout))


class FakeRepository:
    """:class:`Repository` in dictionaries, for unit tests. ``webhooks`` holds config rows
    (as :meth:`PgRepository.webhook_config` returns them), ``rows`` the
    ``webhook_requests`` rows; set ``down`` to make every call fail like a lost database."""

    def __init__(self) -> None:
        self.webhooks: dict[uuid.UUID, dict[str, Any]] = {}
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self.indeterminate: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, float]] = {}
        self.notified = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("fake database is down")

    async def webhook_config(self, webhook_id: uuid.UUID) -> dict[str, Any] | None:
        self._check()
        return self.webhooks.get(webhook_id)

    async def request(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        self._check()
        return self.rows.get(request_id)

    async def requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        self._check()
        return {rid: self.rows[rid] for rid in request_ids if rid in self.rows}

    async def insert_rejected(
        self, event: LeadRejected, *, idempotency_key: str | None, body_sha256: str
    ) -> None:
        self._check()
        row = _rejected_row(event, idempotency_key, body_sha256)
        self.rows.setdefault(event.request_id, {**row, "status": "rejected"})

    async def insert_failed(self, event: LeadFailed, *, idempotency_key: str | None) -> None:
        self._check()
        known = self.rows.get(event.request_id)
        if known is None or known.get("result") is None:
            row = _failed_row(event, idempotency_key)
            self.rows[event.request_id] = {**row, "status": "failed", "result": None}

    async def record_indeterminate(
        self, webhook_id: uuid.UUID, body_sha: str, request_id: uuid.UUID, *, ttl_s: float
    ) -> None:
        self._check()
        key = (webhook_id, body_sha)
        known = self.indeterminate.get(key)
        if known is None or time.monotonic() - known[1] >= ttl_s:
            self.indeterminate[key] = (request_id, time.monotonic())
        self.notified += 1

    async def indeterminate_request(
        self, webhook_id: uuid.UUID, body_sha: str, *, ttl_s: float
    ) -> uuid.UUID | None:
        self._check()
        known = self.indeterminate.get((webhook_id, body_sha))
        if known is None or time.monotonic() - known[1] >= ttl_s:
            return None
        return known[0]

    async def any_indeterminate(self, *, ttl_s: float) -> bool:
        self._check()
        now = time.monotonic()
        return any(now - created < ttl_s for _, created in self.indeterminate.values())
