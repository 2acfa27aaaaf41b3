"""shared.apikeys: keys, the checker's cache (a revoke counts within 1 s), expiry, touches,
and the middleware's answers, on an in-memory key store and clocks the test moves."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.apikeys import (
    KEY_PREFIX,
    PRINCIPAL,
    KeyChecker,
    KeyRefused,
    StoredKey,
    api_key_middleware,
    bearer_key,
    key_digest,
    new_key,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Store:
    def __init__(self) -> None:
        self.rows: dict[bytes, StoredKey] = {}
        self.reads = 0
        self.touches: list[tuple[uuid.UUID, datetime]] = []
        self.fail: Exception | None = None
        self.fail_touch: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def find(self, digest: bytes) -> StoredKey | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.rows.get(digest)

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        if self.fail_touch is not None:
            raise self.fail_touch
        self.touches.append((key_id, at))


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def _checker(store: Store, clocks: Clocks, **kw: float) -> KeyChecker:
    return KeyChecker(store, monotonic=lambda: clocks.mono, now=lambda: clocks.wall, **kw)  # type: ignore[arg-type]


def _add(
    store: Store, *, workspace: uuid.UUID | None = None, **fields: object
) -> tuple[str, StoredKey]:
    made = new_key()
    row = StoredKey(
        id=uuid.uuid4(),
        workspace_id=workspace,
        scope="read",
        expires_at=None,
        revoked_at=None,
        workspace_active=True,
    )
    row = replace(row, **fields)  # type: ignore[arg-type]
    store.rows[made.digest] = row
    return made.key, row


def test_a_new_key_is_long_random_and_only_its_digest_is_kept() -> None:
    a, b = new_key(), new_key()
    assert a.key.startswith(KEY_PREFIX) and len(a.key) == 47 and a.key != b.key
    assert a.digest == key_digest(a.key) and len(a.digest) == 32
    assert a.prefix == a.key[:8] and a.last4 == a.key[-4:]


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer lwk_abc", "lwk_abc"),
        ("bearer   lwk_abc  ", "lwk_abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("", None),
        (None, None),
        ("Bearer " + "x" * 201, None),
    ],
)
def test_bearer_key(header: str | None, key: str | None) -> None:
    assert bearer_key(header) == key


async def test_a_key_speaks_for_its_workspace_and_scope() -> None:
    store, clocks = Store(), Clocks()
    ws = uuid.uuid4()
    key, row = _add(store, workspace=ws, scope="manage")
    op_key, _ = _add(store)
    checker = _checker(store, clocks)
    principal = await checker.principal(f"Bearer {key}")
    assert (principal.key_id, principal.workspace_id, principal.scope) == (row.id, ws, "manage")
    assert principal.sees(ws) and not principal.sees(uuid.uuid4()) and principal.can_manage
    operator = await checker.check(op_key)
    assert operator.operator and operator.sees(uuid.uuid4()) and not operator.can_manage


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Token x", "malformed_authorization"),
        ("Bearer lwk_no", "invalid_api_key"),
    ],
)
async def test_refusals_say_why(header: str | None, code: str) -> None:
    with pytest.raises(KeyRefused) as refused:
        await _checker(Store(), Clocks()).principal(header)
    assert refused.value.code == code


async def test_a_revoke_counts_once_the_cache_ttl_has_passed() -> None:
    store, clocks = Store(), Clocks()
    key, row = _add(store, workspace=uuid.uuid4())
    checker = _checker(store, clocks)
    await checker.check(key)
    await checker.check(key)
    assert store.reads == 1  # cached
    store.rows[key_digest(key)] = replace(row, revoked_at=clocks.wall)
    clocks.advance(0.5)
    await checker.check(key)  # still cached: within the 1 s bound
    clocks.advance(0.5)
    with pytest.raises(KeyRefused, match="revoked"):
        await checker.check(key)
    assert store.reads == 2


async def test_unknown_keys_are_cached_too_and_the_cache_is_bounded() -> None:
    store, clocks = Store(), Clocks()
    checker = _checker(store, clocks, max_cached=10)
    for i in range(50):
        with pytest.raises(KeyRefused):
            await checker.check(f"lwk_unknown_{i}")
    with pytest.raises(KeyRefused):
        await checker.check("lwk_unknown_49")
    assert store.reads == 50
    assert len(checker._cache) <= 10


async def test_expiry_is_checked_on_every_request() -> None:
    store, clocks = Store(), Clocks()
    key, _ = _add(store, workspace=uuid.uuid4(), expires_at=T0 + timedelta(seconds=0.3))
    checker = _checker(store, clocks)
    await checker.check(key)
    clocks.wall += timedelta(seconds=0.3)  # the wall clock only: the answer is cached
    with pytest.raises(KeyRefused) as refused:
        await checker.check(key)
    assert refused.value.code == "expired_api_key"


async def test_a_disabled_workspace_refuses_its_keys() -> None:
    store, clocks = Store(), Clocks()
    key, _ = _add(store, workspace=uuid.uuid4(), workspace_active=False)
    with pytest.raises(KeyRefused) as refused:
        await _checker(store, clocks).check(key)
    assert refused.value.code == "workspace_disabled"


async def test_last_use_is_written_at_most_every_interval() -> None:
    store, clocks = Store(), Clocks()
    key, row = _add(store, workspace=uuid.uuid4())
    checker = _checker(store, clocks, touch_every_s=60)
    for _ in range(5):
        await checker.check(key)
        clocks.advance(10)
    assert store.touches == [(row.id, T0)]
    clocks.advance(20)
    await checker.check(key)
    assert [at for _, at in store.touches] == [T0, T0 + timedelta(seconds=70)]


async def test_a_failed_touch_does_not_refuse() -> None:
    store, clocks = Store(), Clocks()
    key, row = _add(store, workspace=uuid.uuid4())
    store.fail_touch = OSError("away")
    principal = await _checker(store, clocks, touch_every_s=0).check(key)
    assert principal.key_id == row.id and not store.touches


async def test_concurrent_checks_of_one_key_share_one_read() -> None:
    store, clocks = Store(), Clocks()
    key, _ = _add(store, workspace=uuid.uuid4())
    store.gate = asyncio.Event()
    checker = _checker(store, clocks)
    checks = [asyncio.create_task(checker.check(key)) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    principals = await asyncio.gather(*checks)
    assert store.reads == 1 and len({p.key_id for p in principals}) == 1


def test_the_cache_may_not_outlive_a_second() -> None:
    with pytest.raises(ValueError, match="1 s"):
        KeyChecker(Store(), cache_ttl_s=5)


async def test_the_middleware_answers_401_503_and_passes_the_principal() -> None:
    store, clocks = Store(), Clocks()
    key, row = _add(store, workspace=uuid.uuid4())

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"key_id": str(request[PRINCIPAL].key_id)})

    async def public(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            api_key_middleware(_checker(store, clocks), is_public=lambda r: r.path == "/healthz")
        ]
    )
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/healthz", public)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        missing = await client.get("/whoami")
        assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert await missing.json() == {
            "success": False,
            "errors": [
                {
                    "field": "authorization",
                    "code": "missing_api_key",
                    "message": "send an API key: Authorization: Bearer <key>",
                }
            ],
        }
        ok = await client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        assert ok.status == 200 and (await ok.json()) == {"key_id": str(row.id)}
        store.fail = OSError("away")
        clocks.advance(2)
        away = await client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        assert away.status == 503 and away.headers["Retry-After"]
