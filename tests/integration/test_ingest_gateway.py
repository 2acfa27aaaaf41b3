"""The gateway against real Kafka and Postgres: accepting, refusing, idempotency, limits,
config changes, status, Facebook verification, templates, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from services.ingest.waiting import FINAL_STATUSES
from shared import topics
from shared.db import connect
from shared.events import decode_outcome, decode_raw, request_id_for
from shared.settings import CommonSettings
from shared.templates import TEMPLATES
from tests.support.ingest import Hook, auth_headers, create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration

LEAD = {
    "firstname": "Benjie",
    "lastname": "Malinao",
    "phone_number": "(626) 663-3444",
    "email": "Benjie@Example.com",
    "external_crm_id": "crm_12345",
    "product": "Bath Remodel",
    "lead_status": "new",
    "zip": "91101",
}


def body_of(data: Any) -> bytes:
    return orjson.dumps(data)


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any], Any]:
    async with http.post(
        url, data=body, headers={"Content-Type": content_type, **(headers or {})}
    ) as resp:
        raw = await resp.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw.decode(errors="replace")
        return resp.status, dict(resp.headers), data


# Credentials under names the gateway used to let through (now on the shared list, or
# caught by its name pattern): none may reach Kafka or webhook_requests.
SECRET_HEADERS_SENT = {
    "X-Auth-Token": "canary-auth-token",
    "X-Access-Token": "canary-access-token",
    "X-Vendor-Session-Id": "canary-session",
}


async def _stored_result(settings: CommonSettings, request_id: str) -> str:
    """The ``webhook_requests`` row of a request, as text."""
    conn = await connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT result::text AS result FROM webhook_requests WHERE request_id = $1",
            uuid.UUID(request_id),
        )
    finally:
        await conn.close()
    assert row is not None
    return str(row["result"])


async def test_accepts_a_lead_and_enqueues_it_mapped(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = body_of(LEAD)
        headers = {**auth_headers(hook, body, msg_id="msg_1"), **SECRET_HEADERS_SENT}
        status, _, data = await post(http, gw.hook_url(hook), body, headers)
        assert status == 202, data
        assert data["success"] is True and data["status"] == "accepted"
        assert data["webhook_id"] == str(hook.id)
        assert data["request_id"] == str(request_id_for(hook.id, "msg_1"))
        assert data["status_url"] == f"{gw.url}/webhooks/{hook.id}/requests/{data['request_id']}"

        raw = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert len(raw) == 1
        event = raw[0]
        assert str(event.request_id) == data["request_id"]
        assert event.workspace_id == hook.workspace_id and event.idempotency_key == "msg_1"
        assert event.lead.phone == "+16266633444" and event.lead.email == "benjie@example.com"
        assert event.lead.crm_id == "crm_12345" and event.lead.first_name == "Benjie"
        assert event.lead.custom.get("zip") == "91101"
        # Secrets never travel: the signature header and every header of the shared list
        # (shared.redact) are stripped, the rest is kept.
        assert "webhook-signature" not in event.request.headers
        assert not set(event.request.headers) & {h.lower() for h in SECRET_HEADERS_SENT}
        assert not any(v.startswith("canary-") for v in event.request.headers.values())
        assert event.request.headers.get("webhook-id") == "msg_1"
        assert set(event.steps) >= {"authentication", "field_mapping", "validation"}

        # Status: accepted (this process remembers it) until the processor stores it.
        async with http.get(data["status_url"]) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "accepted"


async def test_form_bodies_are_accepted(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        form = b"first_name=Ann&phone=626.663.3444&email=ann%40example.com&extra=1"
        status, _, data = await post(
            http, gw.hook_url(hook), form, content_type="application/x-www-form-urlencoded"
        )
        assert status == 202, data
        (event,) = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert event.lead.phone == "+16266633444" and event.lead.custom.get("extra") == "1"


async def test_s1_s2_known_answers_pass_authentication(settings: CommonSettings) -> None:
    """S1/S2 end to end with the clock pinned: the signatures authenticate (the bodies are
    then refused by validation, which is not an authentication failure)."""
    s1 = await create_webhook(
        settings.database_url, auth_mode="standard", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    s2 = await create_webhook(
        settings.database_url, auth_mode="github", secret="It's a Secret to Everybody"
    )
    async with (
        running_gateway(settings, clock=lambda: 1614265330.0) as gw,
        aiohttp.ClientSession() as http,
    ):
        status, _, data = await post(
            http,
            gw.hook_url(s1),
            b'{"test": 2432232314}',
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
        )
        assert status == 400 and data["errors"][0]["field"] != "authentication", data
        status, _, data = await post(
            http,
            gw.hook_url(s2),
            b"Hello, World!",
            {
                "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            },
        )
        assert status == 400 and data["errors"][0]["code"] == "invalid_json", data


async def test_s3_forged_requests_are_refused_and_never_enqueued(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    gh = await create_webhook(settings.database_url, auth_mode="github")
    now = 1_700_000_000.0
    async with running_gateway(settings, clock=lambda: now) as gw, aiohttp.ClientSession() as http:
        body = body_of(LEAD)
        good = auth_headers(hook, body, msg_id="msg_x", now=now)
        attempts: list[tuple[str, bytes, dict[str, str]]] = []
        for name in good:
            attempts.append((f"missing {name}", body, {k: v for k, v in good.items() if k != name}))
        attempts.append(("bad timestamp", body, {**good, "webhook-timestamp": "yesterday"}))
        for skew in (301, -301):
            attempts.append(
                (f"skew {skew}", body, auth_headers(hook, body, msg_id="msg_x", now=now + skew))
            )
        changed = bytearray(body)
        changed[10] ^= 1
        attempts.append(("body changed by one byte", bytes(changed), good))
        other = await create_webhook(settings.database_url, auth_mode="standard")
        attempts.append(("wrong secret", body, auth_headers(other, body, msg_id="msg_x", now=now)))
        attempts.append(
            ("github wrong secret", body, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
        )
        false_accepts = 0
        for what, data_bytes, headers in attempts:
            url = gw.hook_url(gh if what.startswith("github") else hook)
            status, _, data = await post(http, url, data_bytes, headers)
            if status != 401:
                false_accepts += 1
                print(f"not refused: {what}: {status} {data}")
            else:
                assert data["errors"][0]["field"] == "authentication"
        assert false_accepts == 0
        # Several signatures, one valid: accepted (a rotation in progress).
        bad = "v1," + "A" * 43 + "="
        multi = {**good, "webhook-signature": f"{bad} {good['webhook-signature']}"}
        status, _, data = await post(http, gw.hook_url(hook), body, multi)
        assert status == 202, data
        raw = await read_topic(settings, topics.RAW)
        assert len(raw) == 1, f"Kafka messages from rejected requests: {len(raw) - 1}"
        assert decode_raw(raw[0]).idempotency_key == "msg_x"
        # Authentication failures are not leads: no outcome event either.
        assert await read_topic(settings, topics.OUTCOMES) == []


async def test_s4_unknown_and_disabled_webhooks(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url)
    disabled = await create_webhook(settings.database_url, status="disabled")
    ws_disabled = await create_webhook(settings.database_url)
    conn = await connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE workspaces SET status = 'disabled' WHERE id = $1", ws_disabled.workspace_id
        )
    finally:
        await conn.close()
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = body_of(LEAD)
        for target, expected in (
            (uuid.uuid4(), 404),
            ("not-a-uuid", 404),
            (disabled.id, 410),
            (ws_disabled.id, 410),
        ):
            status, _, data = await post(http, gw.hook_url(target), body)
            assert status == expected, (target, data)
        # A flood of one unknown id is answered from the negative cache: one query in all.
        calls = 0
        loader = gw.deps.repo.webhook_config  # type: ignore[union-attr]

        async def counting(wid: uuid.UUID) -> Any:
            nonlocal calls
            calls += 1
            return await loader(wid)

        gw.deps.cache.set_loader(counting)
        unknown = uuid.uuid4()
        for _ in range(50):
            status, _, _ = await post(http, gw.hook_url(unknown), body)
            assert status == 404
        assert calls == 1
        status, _, _ = await post(http, gw.hook_url(hook), body)
        assert status == 202
        assert len(await read_topic(settings, topics.RAW)) == 1


async def test_s5_body_limit_slow_body_and_huge_headers(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, max_body_bytes=2000)
    async with running_gateway(settings, body_timeout_s=1.0) as gw, aiohttp.ClientSession() as http:
        filler = {**LEAD, "notes": ""}
        base = len(body_of(filler))
        exact = body_of({**filler, "notes": "x" * (2000 - base)})
        assert len(exact) == 2000
        status, _, data = await post(http, gw.hook_url(hook), exact)
        assert status == 202, data
        over = body_of({**filler, "notes": "x" * (2001 - base)})
        status, _, data = await post(http, gw.hook_url(hook), over)
        assert status == 413 and data["errors"][0]["code"] == "too_large"

        # Chunked (no Content-Length) over the limit: refused while reading.
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 300

        async with http.post(
            gw.hook_url(hook), data=chunks(), headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 413

        # Slow drip: headers promise 100 bytes, one arrives every 0.3 s, and the body never
        # completes (99 bytes at most): only the body timeout can answer, with a 408.
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.ingest_port)
        writer.write(
            f"POST /webhooks/{hook.id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        await writer.drain()

        async def drip() -> None:
            for _ in range(98):
                await asyncio.sleep(0.3)
                writer.write(b" ")
                await writer.drain()

        dripping = asyncio.create_task(drip())
        try:
            status_line = await asyncio.wait_for(reader.readline(), 25)
        finally:
            dripping.cancel()
            writer.close()
        assert b" 408 " in status_line, status_line

        # A huge header, and too many headers: 431.
        status, _, data = await post(
            http, gw.hook_url(hook), body_of(LEAD), {"X-Big": "a" * 20_000}
        )
        assert status == 431, data
        many = {f"X-H{i}": "v" for i in range(150)}
        status, _, _ = await post(http, gw.hook_url(hook), body_of(LEAD), many)
        assert status == 431
        assert len(await read_topic(settings, topics.RAW)) == 1


async def test_s5_json_bounds_and_content_type(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url)
    async with (
        running_gateway(settings, json_max_depth=8, json_max_keys=50) as gw,
        aiohttp.ClientSession() as http,
    ):
        deep: Any = {"phone": "6266633444"}
        for _ in range(10):
            deep = {"x": deep}
        status, _, data = await post(http, gw.hook_url(hook), body_of(deep))
        assert status == 400 and data["errors"][0]["code"] == "too_deep"
        wide = {f"k{i}": i for i in range(60)} | {"phone": "6266633444"}
        status, _, data = await post(http, gw.hook_url(hook), body_of(wide))
        assert status == 400 and data["errors"][0]["code"] == "too_many_fields"
        status, _, data = await post(http, gw.hook_url(hook), b"[1, 2]")
        assert status == 400 and data["errors"][0]["code"] == "invalid_type"
        status, _, data = await post(http, gw.hook_url(hook), b"phone=1", content_type="text/plain")
        assert status == 415
        status, _, data = await post(
            http, gw.hook_url(hook), b"\xff\xfe", content_type="application/json"
        )
        assert status == 400 and data["errors"][0]["code"] == "invalid_utf8"
        assert await read_topic(settings, topics.RAW) == []


async def until_limited(
    post_one: Callable[[int], Awaitable[tuple[int, dict[str, Any]]]], *, refusals: int
) -> tuple[list[int], float]:
    """Send (``post_one(i)``) until ``refusals`` answers were 429, each with a Retry-After
    of a whole number of seconds; the statuses and the seconds it took. However slow the
    machine, the limit shows: the counts are checked against the time really taken."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    statuses: list[int] = []
    while statuses.count(429) < refusals:
        assert len(statuses) < 500, "never limited"
        status, headers = await post_one(len(statuses))
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1, headers
    return statuses, loop.time() - started


async def test_s6_a_flooding_source_is_limited_others_are_not(settings: CommonSettings) -> None:
    flooder = await create_webhook(settings.database_url, rate_limit_per_minute=20)
    quiet = await create_webhook(settings.database_url)
    async with (
        running_gateway(
            settings, trusted_proxies="127.0.0.1/32", ip_rate_per_minute=60, ip_burst=30
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        body = body_of(LEAD)

        async def send(hook: Hook, address: str) -> tuple[int, dict[str, Any]]:
            status, headers, _ = await post(
                http, gw.hook_url(hook), body, {"X-Forwarded-For": address}
            )
            return status, headers

        # Each flood request from its own address: only the webhook's limit is in play.
        quiet_statuses: list[int] = []

        async def flood(i: int) -> tuple[int, dict[str, Any]]:
            if i % 3 == 0:
                quiet_statuses.append((await send(quiet, f"198.18.0.{i % 250}"))[0])
            return await send(flooder, f"192.0.2.{i % 250}")

        statuses, took = await until_limited(flood, refusals=5)
        refills = int(took / 3)  # 20/min: one per 3 s
        assert set(statuses) == {202, 429}
        assert 20 <= statuses.count(202) <= 20 + refills
        assert set(quiet_statuses) == {202}, "another webhook must keep 100 % success"

        # Per client address (behind a trusted proxy): one address floods, another is served.
        other_ip: list[int] = []

        async def from_one_address(i: int) -> tuple[int, dict[str, Any]]:
            if i % 5 == 0:
                other_ip.append((await send(quiet, "198.51.100.9"))[0])
            return await send(quiet, "203.0.113.7")

        statuses, took = await until_limited(from_one_address, refusals=3)
        refills = int(took) + 1  # 60/min: one a second
        assert 30 <= statuses.count(202) <= 30 + refills
        assert set(other_ip) == {202}


async def test_idempotent_retries_and_conflicts(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    by_field = await create_webhook(settings.database_url, idempotency_field="lead.id")
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = body_of(LEAD)
        first = await post(
            http, gw.hook_url(hook), body, auth_headers(hook, body, msg_id="msg_retry")
        )
        second = await post(
            http, gw.hook_url(hook), body, auth_headers(hook, body, msg_id="msg_retry")
        )
        assert first[0] == 202 and second[0] == 202
        assert second[2]["status"] == "duplicate"
        assert second[2]["request_id"] == first[2]["request_id"]
        other = body_of({**LEAD, "product": "Kitchen"})
        conflict = await post(
            http, gw.hook_url(hook), other, auth_headers(hook, other, msg_id="msg_retry")
        )
        assert conflict[0] == 409
        assert conflict[2]["errors"][0] == {
            "field": "idempotency_key",
            "code": "idempotency_conflict",
            "message": conflict[2]["errors"][0]["message"],
        }

        # A retry after the first was processed (stored), seen by a fresh process (no memory).
        gw.deps.recent._entries.clear()
        conn = await connect(settings.database_url)
        try:
            await conn.execute(
                "INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at, body_sha256, result)"
                " VALUES ($1, $2, $3, 'processed', now(), $4, $5)",
                uuid.UUID(first[2]["request_id"]),
                hook.workspace_id,
                hook.id,
                __import__("hashlib").sha256(body).hexdigest(),
                {
                    "status": "processed",
                    "contact": {"id": str(uuid.uuid4())},
                    "match_type": "new",
                    "is_new_contact": True,
                    "processing": {"duration_ms": 5},
                },
            )
        finally:
            await conn.close()
        third = await post(
            http, gw.hook_url(hook), body, auth_headers(hook, body, msg_id="msg_retry")
        )
        assert (
            third[0] == 200
            and third[2]["status"] == "duplicate"
            and third[2]["original_status"] == "processed"
        )
        conflict2 = await post(
            http, gw.hook_url(hook), other, auth_headers(hook, other, msg_id="msg_retry")
        )
        assert conflict2[0] == 409

        # The idempotency key can be a body field.
        payload = body_of({**LEAD, "lead": {"id": "L-77"}})
        a = await post(http, gw.hook_url(by_field), payload)
        b = await post(http, gw.hook_url(by_field), payload)
        assert (
            a[0] == 202
            and b[2]["status"] == "duplicate"
            and a[2]["request_id"] == b[2]["request_id"]
        )

        raw = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert len(raw) == 2, "a retry never enqueues a second lead"

        async def conflicts() -> list[Any]:
            outs = [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]
            return [o for o in outs if getattr(o, "reason", None) == "idempotency_conflict"]

        found = await eventually(
            conflicts, until=lambda o: len(o) == 2, deadline_s=15, what="conflict outcomes"
        )
        assert all(o.status_code == 409 for o in found)  # type: ignore[union-attr]


async def test_validation_rejections_are_published_and_stored(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, auth_mode="api-key")
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        body = body_of({"firstname": "No", "phone_number": "12", "email": "not-an-email"})
        headers = {**auth_headers(hook, body), **SECRET_HEADERS_SENT}
        status, _, data = await post(http, gw.hook_url(hook), body, headers)
        assert status == 400 and data["status"] == "rejected"
        fields = {e["field"] for e in data["errors"]}
        assert fields & {"phone", "email"}, data

        async def outcomes() -> list[Any]:
            return [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]

        (rejected,) = await eventually(
            outcomes, until=lambda o: len(o) == 1, deadline_s=15, what="rejection outcome"
        )
        assert rejected.type == "lead.rejected" and rejected.status_code == 400
        assert str(rejected.request_id) == data["request_id"]
        assert hook.api_key_header.lower() not in rejected.request.headers
        assert rejected.processing.duration_ms >= 0

        async def status_of() -> tuple[int, Any]:
            async with http.get(
                f"{gw.url}/webhooks/{hook.id}/requests/{data['request_id']}"
            ) as resp:
                return resp.status, await resp.json()

        _code, stored = await eventually(
            status_of, until=lambda r: r[0] == 200, deadline_s=15, what="status row"
        )
        assert stored["status"] == "rejected" and stored["result"]["status_code"] == 400
        # Neither the outcome on Kafka nor the webhook_requests row holds a secret header.
        assert not set(rejected.request.headers) & {h.lower() for h in SECRET_HEADERS_SENT}
        row = await _stored_result(settings, data["request_id"])
        assert "canary-" not in row and "x-auth-token" not in row
        assert await read_topic(settings, topics.RAW) == []

        # Unknown requests: 404 with status unknown.
        async with http.get(f"{gw.url}/webhooks/{hook.id}/requests/{uuid.uuid4()}") as resp:
            assert resp.status == 404 and (await resp.json())["status"] == "unknown"


async def test_config_changes_apply_at_once(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings, config_ttl_s=3600) as gw, aiohttp.ClientSession() as http:
        body = body_of(LEAD)
        assert (await post(http, gw.hook_url(hook), body))[0] == 202
        conn = await connect(settings.database_url)
        try:
            await conn.execute("UPDATE webhooks SET status = 'disabled' WHERE id = $1", hook.id)

            async def status() -> int:
                return (await post(http, gw.hook_url(hook), body))[0]

            await eventually(status, until=lambda s: s == 410, deadline_s=10, what="disable seen")
            await conn.execute("UPDATE webhooks SET status = 'active' WHERE id = $1", hook.id)
            await eventually(status, until=lambda s: s == 202, deadline_s=10, what="enable seen")
            await conn.execute(
                "UPDATE workspaces SET status = 'disabled' WHERE id = $1", hook.workspace_id
            )
            await eventually(
                status, until=lambda s: s == 410, deadline_s=10, what="workspace disable seen"
            )
            # A webhook created after its id was looked up (negative cache) works at once.
            new_id = uuid.uuid4()
            assert (await post(http, gw.hook_url(new_id), body))[0] == 404
            await conn.execute(
                "INSERT INTO webhooks (id, workspace_id, name) SELECT $1, w.workspace_id, 'late' FROM webhooks w WHERE w.id = $2",
                new_id,
                hook.id,
            )
            await conn.execute(
                "UPDATE workspaces SET status = 'active' WHERE id = $1", hook.workspace_id
            )
            await eventually(
                lambda: post(http, gw.hook_url(new_id), body),
                until=lambda r: r[0] == 202,
                deadline_s=10,
                what="new webhook seen",
            )
        finally:
            await conn.close()


async def test_facebook_subscription_check(settings: CommonSettings) -> None:
    fb = await create_webhook(
        settings.database_url, template="facebook", auth_mode="api-key", verify_token="tok-123"
    )
    generic = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": "tok-123",
            "hub.challenge": "1158201444",
        }
        async with http.get(gw.hook_url(fb), params=params) as resp:
            assert resp.status == 200 and await resp.text() == "1158201444"
        async with http.get(
            gw.hook_url(fb), params={**params, "hub.verify_token": "wrong"}
        ) as resp:
            assert resp.status == 403
        async with http.get(gw.hook_url(fb), params={"hub.mode": "subscribe"}) as resp:
            assert resp.status == 400
        async with http.get(gw.hook_url(generic), params=params) as resp:
            assert resp.status == 404
        async with http.get(gw.hook_url(uuid.uuid4()), params=params) as resp:
            assert resp.status == 404


# What each template's example payload must become, written out by hand from the
# template's field list (not computed by the mapping code under test). Fields a template
# does not map are kept as custom fields.
BENJIE = {
    "crm_id": None,
    "phone": "+16266633444",
    "email": "benjie@example.com",
    "first_name": "Benjie",
    "last_name": "Malinao",
    "product": None,
    "lead_status": None,
    "consent": None,
}
PASADENA = {"address": "100 N Lake Ave", "city": "Pasadena", "state": "CA"}
EXPECTED_LEADS: dict[str, dict[str, Any]] = {
    "generic": {
        **BENJIE,
        "crm_id": "crm_12345",
        "product": "Bath Remodel",
        "lead_status": "new",
        "custom": {},
    },
    "leadconduit": {
        **BENJIE,
        "product": "Bath Remodel",
        "custom": {
            "leadconduit_lead_id": "5fd4b3f2e4b0a1c2d3e4f5a6",
            "address_1": "100 N Lake Ave",
            "city": "Pasadena",
            "state": "CA",
            "postal_code": "91101",
            "lead_source": "leadconduit",
        },
        "consent": {
            "trustedform_cert_url": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
            "leadid_token": "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D",
            "tcpa_consent": True,
            "tcpa_consent_text": None,
            "tcpa_consent_at": None,
        },
    },
    "quinstreet": {
        **BENJIE,
        "product": "BATHROOM_REMODEL",
        "custom": {
            "leadKey": "QS-20240501-000123",
            **PASADENA,
            "postalCode": "91101",
            "ownHome": "Yes",
            "bestTimeToCall": "Morning",
            "lead_source": "quinstreet",
        },
    },
    "buyerlink": {
        **BENJIE,
        "product": "Bath Remodel",
        "custom": {
            "lead_id": "BL-7734211",
            **PASADENA,
            "zip": "91101",
            "lead_source": "buyerlink",
        },
    },
    "facebook": {
        **BENJIE,
        "custom": {
            "leadgen_id": "1234567890123456",
            "created_time": "2024-05-01T12:00:00+0000",
            "ad_id": "23850000000000001",
            "form_id": "987654321098765",
            # the one entry of field_data no mapping reads
            "field_data": [{"name": "what_service_do_you_need?", "values": ["Bath remodel"]}],
            "lead_source": "facebook",
        },
    },
    "zapier": {**BENJIE, "product": "Bath Remodel", "custom": {"zip": "91101"}},
}


def test_every_template_has_an_expected_lead() -> None:
    assert set(EXPECTED_LEADS) == set(TEMPLATES)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
async def test_each_template_accepts_its_vendors_example(
    settings: CommonSettings, template: str
) -> None:
    tpl = TEMPLATES[template]
    hook = await create_webhook(
        settings.database_url,
        template=template,
        auth_mode=tpl.auth_mode,
        idempotency_field=tpl.idempotency_field,
    )
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        payload = tpl.example_payload
        if tpl.content_type == "application/x-www-form-urlencoded":
            from urllib.parse import urlencode

            body = urlencode(payload).encode()
        else:
            body = body_of(payload)
        status, _, data = await post(
            http, gw.hook_url(hook), body, auth_headers(hook, body), content_type=tpl.content_type
        )
        assert status == 202, data
        (event,) = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert event.lead.model_dump(mode="json") == EXPECTED_LEADS[template]
        if tpl.idempotency_field:
            assert event.idempotency_key is not None


async def test_prefer_wait_without_a_processor_answers_202_when_time_runs_out(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        started = asyncio.get_running_loop().time()
        status, headers, data = await post(
            http, gw.hook_url(hook), body_of(LEAD), {"Prefer": "wait=1"}
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert status == 202 and data["status"] == "accepted"
        assert headers.get("Preference-Applied") == "wait=1"
        assert 0.9 <= elapsed < 5


async def test_prefer_wait_wakes_on_the_processors_notification(settings: CommonSettings) -> None:
    """The processor stores the result and notifies; a waiting request answers at once."""
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        task = asyncio.create_task(
            post(http, gw.hook_url(hook), body_of(LEAD), {"Prefer": "wait=20"})
        )
        raw = await eventually(
            lambda: read_topic(settings, topics.RAW),
            until=lambda r: len(r) == 1,
            deadline_s=10,
            what="enqueued",
        )
        event = decode_raw(raw[0])
        assert event.awaited  # the processor notifies for awaited requests only
        contact = uuid.uuid4()
        conn = await connect(settings.database_url)
        try:
            await conn.execute(
                "INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at, processed_at, body_sha256, result)"
                " VALUES ($1, $2, $3, 'processed', now(), now(), $4, $5)",
                event.request_id,
                hook.workspace_id,
                hook.id,
                event.body_sha256,
                {
                    "type": "lead.processed",
                    "status": "processed",
                    "contact": {"id": str(contact)},
                    "match_type": "phone",
                    "is_new_contact": False,
                    "rule_applied": True,
                    "processing": {"duration_ms": 7.2},
                },
            )
            await conn.execute(
                "SELECT pg_notify('leadwire_request_done', $1)", str(event.request_id)
            )
        finally:
            await conn.close()
        # Well before its wait=20 runs out: the answer is the stored result. (How soon after
        # the notification is not asserted: a wall-clock figure fails on a busy machine.)
        status, _, data = await asyncio.wait_for(task, 15)
        assert status == 200
        assert data == {
            "success": True,
            "message": "Contact updated via phone match",
            "contact_id": str(contact),
            "webhook_id": str(hook.id),
            "rule_applied": True,
            "match_type": "phone",
            "is_new_contact": False,
            "processing_time": "7ms",
            "request_id": str(event.request_id),
            "status": "processed",
        }
        assert "processed" in FINAL_STATUSES


async def test_ops_endpoints_and_openapi(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gw, aiohttp.ClientSession() as http:
        await post(http, gw.hook_url(hook), body_of(LEAD))
        await post(http, gw.hook_url(hook), body_of({"nothing": 1}))
        # The public port serves webhooks and docs only: the metrics name every webhook
        # id the gateway has seen (for an unsigned webhook its only credential).
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(f"{gw.url}{path}") as resp:
                assert resp.status == 404, path
                assert str(hook.id) not in await resp.text()
        async with http.get(f"{gw.ops_url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{gw.ops_url}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{gw.ops_url}/metrics") as resp:
            text = await resp.text()
        assert f'leadwire_ingest_requests_total{{status="202",webhook="{hook.id}"}}' in text
        assert 'leadwire_ingest_rejections_total{reason="validation"}' in text
        assert "leadwire_ingest_request_seconds_bucket" in text
        assert "leadwire_kafka_produce_seconds_bucket" in text
        async with http.get(f"{gw.url}/openapi.json") as resp:
            spec = await resp.json()
            assert spec["openapi"] == "3.1.0"
        async with http.get(f"{gw.url}/docs") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "/webhooks/{webhook_id}" in await resp.text()
        async with http.put(gw.hook_url(hook)) as resp:
            assert (
                resp.status == 405
                and (await resp.json())["errors"][0]["code"] == "method_not_allowed"
            )
