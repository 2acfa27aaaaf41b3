"""What the handlers depend on (:class:`Deps`, passed to them keyword-only), and the
bounded set of fire-and-forget work they start (:class:`Background`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from services.ingest.config import ConfigCache
from services.ingest.enqueue import KafkaLink
from services.ingest.indeterminate import Indeterminate
from services.ingest.limits import ClientAddress, TokenBuckets
from services.ingest.listener import Waiters
from services.ingest.lookup import BatchedLookup
from services.ingest.metrics import WebhookLabels
from services.ingest.recent import RecentRequests
from services.ingest.repository import Repository
from services.ingest.settings import IngestSettings


class Background:
    """Fire-and-forget work (recording rejections), bounded and drained on shutdown."""

    def __init__(self, limit: int = 1000) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = limit

    def spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Start ``coro``; False (and ``coro`` closed) when the set is full."""
        if len(self._tasks) >= self._limit:
            coro.close()
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def __len__(self) -> int:
        """Work still running."""
        return len(self._tasks)

    async def drain(self, bound_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=bound_s)


@dataclass
class Deps:
    settings: IngestSettings
    cache: ConfigCache
    kafka: KafkaLink
    waiters: Waiters
    # Wall clock in epoch seconds (signature tolerance, secret expiry); tests pin it.
    clock: Callable[[], float] = time.time
    # None until Postgres answers (the gateway starts without it; see service.py).
    repo: Repository | None = None
    recent: RecentRequests = field(default_factory=RecentRequests)
    ip_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    webhook_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    client_address: ClientAddress = field(default_factory=lambda: ClientAddress(""))
    labels: WebhookLabels = field(default_factory=WebhookLabels)
    background: Background = field(default_factory=Background)
    # Rate limits are per process: a limit is shared out among this many workers.
    workers: int = 1
    indeterminate: Indeterminate = field(default_factory=Indeterminate)
    lookup: BatchedLookup = field(init=False)

    def __post_init__(self) -> None:
        self.lookup = BatchedLookup(self._fetch_requests)

    def connected(self, repo: Repository) -> None:
        """Postgres answers: config loads and request look-ups go through ``repo``."""
        self.repo = repo
        self.cache.set_loader(repo.webhook_config)

    async def _fetch_requests(
        self, request_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        if self.repo is None:
            return {}
        return await self.repo.requests(request_ids)
