"""Dashboard sessions: the key asked for once, then a cookie.

``POST /login`` with a key that works opens a session: a random id (256 bits) sent as the
cookie ``leadwire_session`` and stored server side, in ``analytics_sessions`` (migration
080), as its sha256 beside the sha256 of the key that opened it (``api_keys.key_hash``;
never the key) and when it expires. So every analytics replica knows every session, a
restart keeps them, and a copy of the table opens nothing.

- Every request through a session re-checks its key (:class:`shared.apikeys.KeyChecker`,
  at most 1 s of cache): a revoked or expired key, or a disabled workspace, stops its
  sessions within a second, as it stops the key.
- A session expires ``lifetime`` after it was opened (``LEADWIRE_ANALYTICS_SESSION_HOURS``,
  8); the cookie's ``Max-Age`` says the same. Logout deletes the row.
- The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's
  page sends it), ``Path=/``, and ``Secure`` over HTTPS or when
  ``LEADWIRE_ANALYTICS_COOKIE_SECURE`` says so.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg
from aiohttp import web

from services.analytics.clock import Clock
from shared.apikeys import MAX_KEY_LENGTH, KeyChecker, KeyRefused, Principal, key_digest

COOKIE = "leadwire_session"
# Longer cookie values are not session ids (one is 43 characters).
MAX_SESSION_ID = 100


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class SessionStore(Protocol):
    async def open(self, id_digest: bytes, key_digest: bytes, expires_at: datetime) -> None: ...

    async def key_of(self, id_digest: bytes, now: datetime) -> bytes | None:
        """The digest of the key that opened the session, if it has not expired."""
        ...

    async def close(self, id_digest: bytes) -> None: ...

    async def prune(self, now: datetime) -> int: ...


class PostgresSessions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self, id_digest: bytes, key_digest: bytes, expires_at: datetime) -> None:
        await self._pool.execute(
            "INSERT INTO analytics_sessions (id_hash, key_hash, expires_at) VALUES ($1, $2, $3)",
            id_digest,
            key_digest,
            expires_at,
        )

    async def key_of(self, id_digest: bytes, now: datetime) -> bytes | None:
        value = await self._pool.fetchval(
            "SELECT key_hash FROM analytics_sessions WHERE id_hash = $1 AND expires_at > $2",
            id_digest,
            now,
        )
        return bytes(value) if value is not None else None

    async def close(self, id_digest: bytes) -> None:
        await self._pool.execute("DELETE FROM analytics_sessions WHERE id_hash = $1", id_digest)

    async def prune(self, now: datetime) -> int:
        result = await self._pool.execute(
            "DELETE FROM analytics_sessions WHERE expires_at <= $1", now
        )
        return int(result.split()[-1])


class MemorySessions:
    """The same store in memory (unit tests)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, tuple[bytes, datetime]] = {}

    async def open(self, id_digest: bytes, key_digest: bytes, expires_at: datetime) -> None:
        self.rows[id_digest] = (key_digest, expires_at)

    async def key_of(self, id_digest: bytes, now: datetime) -> bytes | None:
        row = self.rows.get(id_digest)
        return row[0] if row is not None and row[1] > now else None

    async def close(self, id_digest: bytes) -> None:
        self.rows.pop(id_digest, None)

    async def prune(self, now: datetime) -> int:
        gone = [k for k, (_, expires) in self.rows.items() if expires <= now]
        for k in gone:
            del self.rows[k]
        return len(gone)


@dataclass(frozen=True)
class Sessions:
    """Opening, reading and closing sessions (see the module's promises)."""

    store: SessionStore
    checker: KeyChecker
    clock: Clock
    lifetime: timedelta = timedelta(hours=8)
    secure_cookie: bool = False

    async def open(self, key: str) -> tuple[str, Principal]:
        """A new session for a key that works (else :class:`KeyRefused`): its id, which
        only the cookie carries, and who it speaks for."""
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise KeyRefused("invalid_api_key", "unknown API key")
        principal = await self.checker.check(key)
        session_id = secrets.token_urlsafe(32)
        await self.store.open(_digest(session_id), key_digest(key), self.clock() + self.lifetime)
        return session_id, principal

    async def principal(self, request: web.Request) -> Principal:
        """Who the request's session cookie speaks for (else :class:`KeyRefused`)."""
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            raise KeyRefused("missing_api_key", "send an API key: Authorization: Bearer <key>")
        key = None
        if len(session_id) <= MAX_SESSION_ID:
            key = await self.store.key_of(_digest(session_id), self.clock())
        if key is None:
            raise KeyRefused("invalid_session", "the session has ended: sign in again")
        return await self.checker.check_digest(key)

    async def close(self, request: web.Request) -> None:
        session_id = request.cookies.get(COOKIE)
        if session_id and len(session_id) <= MAX_SESSION_ID:
            await self.store.close(_digest(session_id))

    def set_cookie(self, resp: web.StreamResponse, request: web.Request, session_id: str) -> None:
        resp.set_cookie(
            COOKIE,
            session_id,
            max_age=int(self.lifetime.total_seconds()),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie or request.secure,
        )

    def clear_cookie(self, resp: web.StreamResponse, request: web.Request) -> None:
        resp.del_cookie(
            COOKIE,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie or request.secure,
        )
