"""When the processor stored each request: the benchmarks' "committed" clock.

The processor notifies (``leadwire_request_done``) only for the requests a client waits for
(``Prefer: wait``), so a benchmark cannot listen for every lead. It polls
``webhook_requests`` instead and takes each finished request's ``processed_at`` (the
processor's own timestamp, stamped just before the batch's statements and commit) on this
process's monotonic clock: the polling interval adds nothing to the figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import asyncpg

POLL_S = 0.05
FINISHED = """
SELECT request_id::text AS id, extract(epoch FROM processed_at)::float8 AS at
  FROM webhook_requests
 WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL
"""


class Commits:
    """``at``: request id -> when the processor stored it (``time.monotonic()`` scale)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._conn: asyncpg.Connection | None = None
        # wall clock - monotonic clock, to put processed_at on the monotonic scale.
        self._offset = time.time() - time.monotonic()

    async def start(self, dsn: str) -> None:
        self._conn = await asyncpg.connect(dsn)

    async def poll(self, ids: Iterable[str]) -> None:
        """Record every request of ``ids`` stored since the last poll."""
        assert self._conn is not None, "start() first"
        pending = [i for i in ids if i not in self.at]
        for chunk in range(0, len(pending), 5000):
            rows = await self._conn.fetch(FINISHED, pending[chunk : chunk + 5000])
            for row in rows:
                self.at[row["id"]] = row["at"] - self._offset

    async def wait_for(self, ids: set[str], deadline_s: float) -> bool:
        """Poll until every request of ``ids`` is stored: False at the deadline."""
        end = time.monotonic() + deadline_s
        while True:
            await self.poll(ids)
            if ids <= self.at.keys():
                return True
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(POLL_S)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
