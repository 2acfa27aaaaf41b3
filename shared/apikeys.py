"""API keys: how a caller proves who it is to leadwire's HTTP APIs (the management API;
next the analytics API, its stream, the dashboard and Socket.IO).

A key is ``lwk_`` + 43 url-safe characters (256 random bits). It is shown once, when it is
made; only its sha256 is stored (``api_keys.key_hash``; with that much entropy a slow hash
buys nothing). It belongs to one workspace, or to none (an *operator* key, over every
workspace), and has a scope: ``read`` or ``manage``. It travels as
``Authorization: Bearer <key>``. The keys are made, listed and revoked by the management
API's admin (:mod:`services.api.admin`, ``leadwire apikey``); this module only checks them.

What :class:`KeyChecker` promises:

- A revoked, expired or unknown key is refused within ``cache_ttl_s`` (at most 1 s) of
  the change: answers, refusals included, are cached that long and no longer; expiry is
  compared with the clock on every check.
- A key of a disabled workspace is refused (the operator's keys still work).
- Checking costs at most one Postgres read per key per ``cache_ttl_s`` (concurrent checks
  of one key share it); the cache is bounded, so random keys cannot grow it without end.
- ``last_used_at`` is written at most once per ``touch_every_s`` per key and process; a
  failure to write it is logged and never refuses the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import asyncpg
import orjson
from aiohttp import web

from shared.logs import get_logger

log = get_logger(__name__)

KEY_PREFIX = "lwk_"
Scope = Literal["read", "manage"]
SCOPES: tuple[Scope, ...] = ("read", "manage")
# The longest credential read from a header; a real key has 47 characters.
MAX_KEY_LENGTH = 200
CACHE_TTL_S = 1.0
TOUCH_EVERY_S = 60.0
MAX_CACHED = 10_000

# Postgres away while checking a key: the caller answers 503, not 401.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass(frozen=True)
class NewKey:
    """A key as it is made: ``key`` is shown once; the rest is stored."""

    key: str
    digest: bytes
    prefix: str  # its first 8 characters, to recognise it in a listing
    last4: str


def new_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, digest=key_digest(key), prefix=key[:8], last4=key[-4:])


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer_key(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <key>`` header; None when absent or
    not of that form."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_KEY_LENGTH:
        return None
    return value


@dataclass(frozen=True)
class Principal:
    """Who a checked key speaks for."""

    key_id: uuid.UUID
    workspace_id: uuid.UUID | None  # None: an operator key (every workspace)
    scope: Scope

    @property
    def operator(self) -> bool:
        return self.workspace_id is None

    @property
    def can_manage(self) -> bool:
        return self.scope == "manage"

    def sees(self, workspace_id: uuid.UUID) -> bool:
        return self.workspace_id is None or self.workspace_id == workspace_id


@dataclass(frozen=True)
class StoredKey:
    """What the checker reads of a key's row."""

    id: uuid.UUID
    workspace_id: uuid.UUID | None
    scope: Scope
    expires_at: datetime | None
    revoked_at: datetime | None
    workspace_active: bool


class KeyRefused(Exception):
    """The request carries no usable key; ``code`` says why (for the error body)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KeyStore(Protocol):
    async def find(self, digest: bytes) -> StoredKey | None: ...

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None: ...


class PostgresKeyStore:
    """The ``api_keys`` rows, read through a pool (the table is created by migration 070)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, digest: bytes) -> StoredKey | None:
        row = await self._pool.fetchrow(
            """SELECT k.id, k.workspace_id, k.scope, k.expires_at, k.revoked_at,
                      (k.workspace_id IS NULL OR ws.status = 'active') AS workspace_active
               FROM api_keys k LEFT JOIN workspaces ws ON ws.id = k.workspace_id
               WHERE k.key_hash = $1""",
            digest,
        )
        return StoredKey(**dict(row)) if row is not None else None

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        await self._pool.execute(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 "
            "AND (last_used_at IS NULL OR last_used_at < $2)",
            key_id,
            at,
        )


class KeyChecker:
    """Turns a presented key into a :class:`Principal`, or raises :class:`KeyRefused`
    (see the module's promises). Database errors propagate (the caller answers 503)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        touch_every_s: float = TOUCH_EVERY_S,
        max_cached: int = MAX_CACHED,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0 <= cache_ttl_s <= CACHE_TTL_S:
            raise ValueError("a revoke must take effect within 1 s: cache_ttl_s <= 1")
        self._store = store
        self._ttl = cache_ttl_s
        self._touch_every = touch_every_s
        self._max_cached = max_cached
        self._monotonic = monotonic
        self._now = now
        self._cache: dict[bytes, tuple[float, StoredKey | None]] = {}
        self._reading: dict[bytes, asyncio.Task[StoredKey | None]] = {}
        self._touched: dict[uuid.UUID, float] = {}

    async def principal(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header's value."""
        if not authorization:
            raise KeyRefused("missing_api_key", "send an API key: Authorization: Bearer <key>")
        key = bearer_key(authorization)
        if key is None:
            raise KeyRefused("malformed_authorization", "expected Authorization: Bearer <key>")
        return await self.check(key)

    async def check(self, key: str) -> Principal:
        return await self.check_digest(key_digest(key))

    async def check_digest(self, digest: bytes) -> Principal:
        """The principal of the key whose sha256 is ``digest`` (what a dashboard session
        keeps instead of the key), under the same rules as :meth:`check`."""
        stored = await self._lookup(digest)
        if stored is None:
            raise KeyRefused("invalid_api_key", "unknown API key")
        if stored.revoked_at is not None:
            raise KeyRefused("revoked_api_key", "this API key was revoked")
        if stored.expires_at is not None and stored.expires_at <= self._now():
            raise KeyRefused("expired_api_key", "this API key has expired")
        if not stored.workspace_active:
            raise KeyRefused("workspace_disabled", "the key's workspace is disabled")
        await self._touch(stored.id)
        return Principal(key_id=stored.id, workspace_id=stored.workspace_id, scope=stored.scope)

    async def _lookup(self, digest: bytes) -> StoredKey | None:
        cached = self._cache.get(digest)
        if cached is not None and self._monotonic() - cached[0] < self._ttl:
            return cached[1]
        reading = self._reading.get(digest)
        if reading is None:
            reading = asyncio.create_task(self._read(digest))
            self._reading[digest] = reading
            reading.add_done_callback(lambda task: self._read_done(digest, task))
        # Shielded: a caller that goes away does not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, digest: bytes) -> StoredKey | None:
        stored = await self._store.find(digest)
        self._remember(digest, stored)
        return stored

    def _read_done(self, digest: bytes, task: asyncio.Task[StoredKey | None]) -> None:
        if self._reading.get(digest) is task:
            del self._reading[digest]
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller went away

    def _remember(self, digest: bytes, stored: StoredKey | None) -> None:
        if len(self._cache) >= self._max_cached:
            # Drop the older half (dicts keep insertion order): bounded, and cheap.
            for old in list(self._cache)[: self._max_cached // 2]:
                del self._cache[old]
        self._cache.pop(digest, None)
        self._cache[digest] = (self._monotonic(), stored)

    async def _touch(self, key_id: uuid.UUID) -> None:
        now = self._monotonic()
        last = self._touched.get(key_id)
        if last is not None and now - last < self._touch_every:
            return
        self._touched[key_id] = now
        try:
            await self._store.touch(key_id, self._now())
        except DATABASE_ERRORS as exc:
            log.warning("api_key_touch_failed", key_id=str(key_id), error=type(exc).__name__)


# --- HTTP -------------------------------------------------------------------------------

PRINCIPAL = web.RequestKey("leadwire_principal", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (status, code, message) -> the answer; the default is the gateway's error shape.
Refuse = Callable[[int, str, str], web.StreamResponse]
# Another credential than the header (a dashboard's session cookie): its Principal, or
# KeyRefused. Asked only when the request has no Authorization header.
Fallback = Callable[[web.Request], Awaitable[Principal]]


def error_body(errors: list[dict[str, str]]) -> bytes:
    """The error shape every leadwire API answers with (the gateway's)."""
    return orjson.dumps({"success": False, "errors": errors})


def refusal(status: int, code: str, message: str) -> web.Response:
    """A refusal about the credential, in the gateway's error shape."""
    body = error_body([{"field": "authorization", "code": code, "message": message}])
    resp = web.Response(body=body, status=status, content_type="application/json")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="leadwire"'
    elif status == 503:
        resp.headers["Retry-After"] = "2"
    return resp


def api_key_middleware(
    checker: KeyChecker,
    *,
    is_public: Callable[[web.Request], bool],
    refuse: Refuse = refusal,
    fallback: Fallback | None = None,
) -> Any:
    """An aiohttp middleware: every request but the public ones (``is_public``) needs a
    key (or, without an Authorization header, what ``fallback`` accepts); the handler
    finds its :class:`Principal` as ``request[PRINCIPAL]``. No key, or one that does not
    work: 401; Postgres away while checking: 503."""

    @web.middleware
    async def require_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        try:
            authorization = request.headers.get("Authorization")
            if authorization is None and fallback is not None:
                principal = await fallback(request)
            else:
                principal = await checker.principal(authorization)
        except KeyRefused as exc:
            return refuse(401, exc.code, exc.message)
        except DATABASE_ERRORS as exc:
            log.warning("api_key_check_unavailable", error=type(exc).__name__)
            return refuse(503, "unavailable", "cannot check the key now; retry shortly")
        request[PRINCIPAL] = principal
        return await handler(request)

    return require_api_key
