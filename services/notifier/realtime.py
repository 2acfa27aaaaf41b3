"""Real-time push over Socket.IO: one room per workspace, joined with its token.

A client connects with ``auth={"workspace_id": ..., "token": ...}``; the token's sha256
must equal the workspace's ``realtime_token_hash`` (constant-time compare), else the
connection is refused, as it is for a disabled workspace. It then receives, in its
workspace's room only, ``lead`` (a lead was processed: contact summary), ``lead_failed``,
``lead_rejected`` and ``alert`` events, as the workspace's realtime rules select.

A session lasts only while what opened it holds: every ``LEADWIRE_NOTIFY_REALTIME_RECHECK_S``
(1 s) the hub reads the token hash and status of the workspaces it has sessions of (one
query, none without sessions) and disconnects every session whose token was rotated or
removed since it connected, or whose workspace was disabled or deleted
(:meth:`RealtimeHub.check_sessions`). So a rotation (``leadwire notify token --rotate``,
the management API) or a disabled workspace closes the old connections within about that
interval plus the query, on every notifier instance; a client that reconnects with the
old token is refused.

Fan-out across instances: the consumer that records an event publishes the push with
``pg_notify`` in the same transaction as its (deduplicating) send row, and every
notifier instance LISTENs and emits to the clients connected to it. So a client may
connect to any instance, a push is published only once per event (a replay finds the
row and publishes nothing), and only if the row was committed. Pushes are ephemeral:
a client that is not connected (or an instance whose LISTEN connection is being
re-established) misses them; the CRM reloads its lists on reconnect.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import socketio
from aiohttp import web

from services.notifier import metrics
from services.notifier.ledger import REALTIME_CHANNEL, token_hash
from services.notifier.repository import Repository
from shared.db import connect
from shared.events import utcnow
from shared.logs import get_logger

log = get_logger(__name__)

DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class RealtimeHub:
    def __init__(self, *, repo: Repository, dsn: str, cors_origins: str = "*") -> None:
        self._repo = repo
        self._dsn = dsn
        origins: str | list[str] = (
            "*"
            if cors_origins.strip() == "*"
            else [o.strip() for o in cors_origins.split(",") if o.strip()]
        )
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", cors_allowed_origins=origins, logger=False, engineio_logger=False
        )
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self._seen: OrderedDict[str, None] = OrderedDict()
        # sid -> (workspace, the token hash it connected with)
        self._sessions: dict[str, tuple[uuid.UUID, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.listening = False

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)

    # --- connections ------------------------------------------------------------------

    async def _connect(self, sid: str, _environ: dict[str, Any], auth: Any = None) -> None:
        workspace_id, token = None, None
        if isinstance(auth, dict):
            workspace_id, token = auth.get("workspace_id"), auth.get("token")
        try:
            ws = uuid.UUID(str(workspace_id))
        except ValueError:
            metrics.REALTIME_REFUSED.labels("bad_auth").inc()
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        if not isinstance(token, str) or not token:
            metrics.REALTIME_REFUSED.labels("bad_auth").inc()
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        try:
            access = (await self._repo.realtime_access([ws])).get(ws)
        except DATABASE_ERRORS:
            metrics.REALTIME_REFUSED.labels("unavailable").inc()
            raise socketio.exceptions.ConnectionRefusedError("unavailable, retry") from None
        presented = token_hash(token)
        if (
            access is None
            or not access.active
            or not access.token_hash
            or not hmac.compare_digest(access.token_hash, presented)
        ):
            metrics.REALTIME_REFUSED.labels("unauthorized").inc()
            log.info("realtime_refused", workspace_id=str(ws))
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        await self.sio.enter_room(sid, str(ws))
        self._sessions[sid] = (ws, presented)
        metrics.REALTIME_CLIENTS.set(len(self._sessions))
        log.info("realtime_connected", workspace_id=str(ws))

    async def _disconnect(self, sid: str, *_args: Any) -> None:
        self._sessions.pop(sid, None)
        metrics.REALTIME_CLIENTS.set(len(self._sessions))

    async def check_sessions(self) -> int:
        """Disconnect the sessions whose token changed or whose workspace is no longer
        active since they connected; returns how many were dropped. Postgres away: the
        error propagates (the periodic caller logs it and tries again next round; the
        sessions stay, as connects are refused meanwhile)."""
        if not self._sessions:
            return 0
        workspaces = list({ws for ws, _ in self._sessions.values()})
        current = await self._repo.realtime_access(workspaces)
        dropped = 0
        for sid, (ws, connected_with) in list(self._sessions.items()):
            access = current.get(ws)
            if access is None or not access.active:
                reason = "workspace_disabled"
            elif not access.token_hash or not hmac.compare_digest(
                access.token_hash, connected_with
            ):
                reason = "token_rotated"
            else:
                continue
            self._sessions.pop(sid, None)
            await self.sio.disconnect(sid)
            metrics.REALTIME_DROPPED.labels(reason).inc()
            log.info("realtime_dropped", workspace_id=str(ws), reason=reason)
            dropped += 1
        metrics.REALTIME_CLIENTS.set(len(self._sessions))
        return dropped

    # --- fan-out ----------------------------------------------------------------------

    async def listen(self, stop: asyncio.Event) -> None:
        """LISTEN for pushes until ``stop``; reconnect when the connection drops."""
        backoff = 0.2
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn, timeout=5)
                await conn.add_listener(REALTIME_CHANNEL, self._on_notice)
                self.listening = True
                backoff = 0.2
                while not stop.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(stop.wait(), 5.0)
                    except TimeoutError:
                        # A half-open connection would never deliver: probe it.
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5.0)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("realtime_listen_retry", error=type(exc).__name__)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 5.0)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                        conn.terminate()
            if not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 5.0)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_notice(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self._emit(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit(self, payload: str) -> None:
        doc = orjson.loads(payload)
        data = doc["data"]
        key = f"{data.get('event_id')}:{doc['workspace_id']}"
        # The ledger already makes a push unique per event; this guards a notice seen twice.
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        await self.sio.emit(doc["event"], data, room=doc["workspace_id"])
        metrics.SENT.labels("realtime").inc()
        try:
            event_at = datetime.fromisoformat(doc["event_at"])
            metrics.DELAY.labels("realtime").observe(
                max((utcnow() - event_at).total_seconds(), 0.0)
            )
        except (KeyError, ValueError):
            pass
