"""Idempotency lookups, batched: the requests that ask in one event-loop turn share one
query (``request_id = ANY($1)``). Under load that turns dozens of round trips into one;
alone, a request waits for nothing (the batch is sent on the next loop iteration)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

Fetch = Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, dict[str, Any]]]]


class BatchedLookup:
    def __init__(self, fetch: Fetch, *, max_batch: int = 500) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._pending: dict[uuid.UUID, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._pending.setdefault(request_id, []).append(future)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: dict[uuid.UUID, list[asyncio.Future[dict[str, Any] | None]]]
    ) -> None:
        try:
            rows = await self._fetch(list(batch))
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for request_id, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(rows.get(request_id))
