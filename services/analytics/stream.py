"""Live dashboard updates: Postgres LISTEN -> in-process hub -> server-sent events.

Every batch that counts something runs ``pg_notify('leadwire_analytics', workspace_id)``
in its transaction, so the notification goes out on commit to every analytics replica,
whichever one consumed the partition. Each replica wakes the SSE streams of that
workspace; a stream then re-reads the figures (at most every ``min_interval`` seconds, so
a burst of batches costs one read).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import asyncpg

from services.analytics.repository import NOTIFY_CHANNEL
from shared.logs import get_logger

log = get_logger(__name__)


class Subscription:
    def __init__(self, workspace_id: uuid.UUID) -> None:
        self.workspace_id = workspace_id
        self.changed = asyncio.Event()


class Hub:
    """Which streams watch which workspace; wakes them when it changes."""

    def __init__(self) -> None:
        self._subs: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self.closed = False

    def subscribe(self, workspace_id: uuid.UUID) -> Subscription:
        sub = Subscription(workspace_id)
        self._subs[workspace_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.workspace_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.workspace_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def notify(self, workspace_id: uuid.UUID) -> None:
        for sub in self._subs.get(workspace_id, ()):
            sub.changed.set()

    def notify_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.changed.set()

    def close(self) -> None:
        """Shutting down: every stream ends after its current write."""
        self.closed = True
        self.notify_all()


async def listen(dsn: str, hub: Hub, stop: asyncio.Event) -> None:
    """LISTEN for changes until ``stop``; reconnects (and wakes every stream) after a drop."""
    backoff = 0.2

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            hub.notify(uuid.UUID(payload))
        except ValueError:
            pass

    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            conn.add_termination_listener(lambda _c, ev=lost: ev.set())
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            backoff = 0.2
            hub.notify_all()  # anything missed while disconnected
            while not stop.is_set() and not lost.is_set() and not conn.is_closed():
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                try:
                    await asyncio.wait(waiters, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                if not stop.is_set() and not conn.is_closed():
                    # A cheap liveness probe: a half-open connection shows up here.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
            log.warning("analytics_listen_retry", error=type(exc).__name__)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except (OSError, asyncpg.PostgresError, TimeoutError):
                    conn.terminate()
