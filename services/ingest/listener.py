"""Postgres notifications the gateway follows, on one dedicated connection per process.

- ``leadwire_config`` (``webhooks:<id>`` / ``workspaces:<id>``): drop cached config.
- ``leadwire_request_done`` (``<request_id> <answer>``, :mod:`shared.done`): the processor
  stored a request's result; wake the ``Prefer: wait`` requests waiting for it, with the
  answer's fields, so they answer without reading the row.
- ``leadwire_ingest_indeterminate``: a gateway answered an indeterminate 503; look up
  unkeyed retries for a while (see indeterminate.py).

The connection is checked every few seconds and re-opened when Postgres restarts; on
every (re)connect the whole config cache is dropped and every waiter re-checks the table,
because notifications sent while we were away are lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from services.ingest.repository import INDETERMINATE_CHANNEL
from shared import done
from shared.logs import get_logger

log = get_logger(__name__)

CONFIG_CHANNEL = "leadwire_config"
DONE_CHANNEL = done.CHANNEL


class Waiter(asyncio.Event):
    """One waiting request: set when its outcome may be stored; ``row`` holds the stored
    row's answer when the notification carried it (else the waiter reads the row)."""

    def __init__(self) -> None:
        super().__init__()
        self.row: dict[str, Any] | None = None

    def take_row(self) -> dict[str, Any] | None:
        """The row the last notification carried, once."""
        row, self.row = self.row, None
        return row


class Waiters:
    """``Prefer: wait`` requests by request id; each waiter has an Event of its own."""

    def __init__(self) -> None:
        self._events: dict[uuid.UUID, set[Waiter]] = {}

    def register(self, request_id: uuid.UUID) -> Waiter:
        event = Waiter()
        self._events.setdefault(request_id, set()).add(event)
        return event

    def release(self, request_id: uuid.UUID, event: Waiter) -> None:
        events = self._events.get(request_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[request_id]

    def notify(self, request_id: uuid.UUID, row: dict[str, Any] | None = None) -> None:
        """Wake the request's waiters (with its stored row's answer, when known)."""
        for event in self._events.get(request_id, ()):
            event.row = row
            event.set()

    def notify_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()


class Listener:
    def __init__(
        self,
        dsn: str,
        *,
        on_config: Callable[[str], None],
        waiters: Waiters,
        on_reconnect: Callable[[], None],
        on_indeterminate: Callable[[], None] = lambda: None,
        check_interval_s: float = 5.0,
    ) -> None:
        self._on_indeterminate = on_indeterminate
        self._dsn = dsn
        self._on_config = on_config
        self._waiters = waiters
        self._on_reconnect = on_reconnect
        self._check_interval = check_interval_s
        self.connected = False

    def _config(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_config(payload)

    def _done(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            request_id, row = done.decode(payload)
        except ValueError:
            return
        self._waiters.notify(request_id, row)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        backoff = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CONFIG_CHANNEL, self._config)
                await conn.add_listener(DONE_CHANNEL, self._done)
                await conn.add_listener(
                    INDETERMINATE_CHANNEL, lambda *_args: self._on_indeterminate()
                )
                self.connected = True
                backoff = 0.2
                self._on_reconnect()
                self._waiters.notify_all()
                log.info("pg_listener_connected")
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    except TimeoutError:
                        # A half-open connection never fires the termination listener.
                        await conn.fetchval("SELECT 1", timeout=3)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("pg_listener_lost", error=type(exc).__name__)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
