"""The gateway's SQL, in one place: webhook config, request status, rejection records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

_CONFIG = """
SELECT w.id, w.workspace_id, w.name, w.template, w.auth_mode, w.secret, w.secret_previous,
       w.secret_previous_expires_at, w.basic_username, w.api_key_header, w.status,
       w.rate_limit_per_minute, w.max_body_bytes, w.idempotency_field, w.mapping,
       w.verify_token, ws.status AS workspace_status, ws.default_region
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


class Repository:
    """Queries on a pool; every call bounded by ``timeout`` seconds."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 2.0) -> None:
        self._pool = pool
        self._timeout = timeout

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

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
        self,
        *,
        request_id: uuid.UUID,
        workspace_id: uuid.UUID,
        webhook_id: uuid.UUID,
        received_at: datetime,
        processed_at: datetime,
        idempotency_key: str | None,
        body_sha256: str,
        result: dict[str, Any],
        steps: dict[str, float],
        error: dict[str, Any],
    ) -> None:
        # Idempotent: a rejection id is random and inserted once; a repeat does nothing.
        await self._pool.execute(
            _INSERT_REJECTED,
            request_id,
            workspace_id,
            webhook_id,
            received_at,
            processed_at,
            idempotency_key,
            body_sha256,
            result,
            steps,
            error,
            timeout=self._timeout,
        )
