"""The cases of issue 13, one test each, through a running gateway (and where it matters the
processor and analytics): H1 (control characters, Latin-1 header bytes) and H5 (spellings
of one identity). The input policy itself is in docs/ingest.md ("Input policy")."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.ingest.metrics import PAYLOAD_DROPPED, REJECTION_PUBLISH_FAILED
from shared import topics
from shared.db import connect
from shared.events import LeadReceived, LeadRejected, decode_outcome, decode_raw
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, wait_total
from tests.support.ingest import (
    Gateway,
    Hook,
    auth_headers,
    create_webhook,
    raw_post,
    running_gateway,
)
from tests.support.polling import eventually
from tests.support.processor import prepare_topics, processor_settings, processors
from tests.support.topics import read_topic, wait_caught_up

pytestmark = pytest.mark.integration

JSON = (b"Content-Type", b"application/json")
FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
WAIT = (b"Prefer", b"wait=20")
LATIN1_AGENT = (b"User-Agent", b"Caf\xe9Client")


async def post(
    gw: Gateway, hook: Hook, body: bytes, *headers: tuple[bytes, bytes]
) -> tuple[int, Any]:
    """POST over a plain socket with ``hook``'s authentication; (status, JSON answer)."""
    signed = [(k.encode(), v.encode()) for k, v in auth_headers(hook, body).items()]
    status, content = await raw_post(gw.url, f"/webhooks/{hook.id}", body, [*signed, *headers])
    return status, orjson.loads(content) if content else None


@contextlib.asynccontextmanager
async def gateway_and_processor(settings: CommonSettings) -> AsyncIterator[Gateway]:
    await prepare_topics(settings)
    processor = processor_settings(settings, processor_group=f"{settings.topic_prefix}processor")
    async with running_gateway(settings) as gw, processors(processor):
        yield gw


async def fetch(settings: CommonSettings, query: str, *args: Any) -> list[dict[str, Any]]:
    db = await connect(settings.database_url)
    try:
        return [dict(r) for r in await db.fetch(query, *args)]
    finally:
        await db.close()


async def request_rows(settings: CommonSettings, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await fetch(
        settings,
        "SELECT request_id, status, result FROM webhook_requests WHERE request_id = ANY($1)",
        [uuid.UUID(i) for i in ids],
    )
    return {str(r["request_id"]): r for r in rows}


# --- (a) a control character in a field name -------------------------------------------


async def test_a_nul_in_a_field_name_is_refused_and_analytics_goes_on_counting(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    counting = analytics_settings(settings, analytics_group=f"{settings.topic_prefix}analytics")
    async with gateway_and_processor(settings) as gw, running_analytics(counting) as analytics:
        poison = orjson.dumps({"phone_number": "+14155550100", "k\x00": "x" * 10_001})
        status, answer = await post(gw, hook, poison, JSON)
        assert status == 400, answer
        assert [(e["field"], e["code"]) for e in answer["errors"]] == [
            ("k\\u0000", "control_character")
        ]
        for i in range(3):
            status, _ = await post(
                gw, hook, orjson.dumps({"phone_number": f"+1415555{101 + i:04d}"}), JSON
            )
            assert status == 202
        figures = await wait_total(analytics, hook.id, 4, deadline_s=60)
        await wait_caught_up(settings, counting.analytics_group, topics.OUTCOMES, deadline_s=60)
    metrics = figures["metrics"]
    assert (metrics["rejected_requests"], metrics["successful_requests"]) == (1, 3)
    assert await read_topic(settings, topics.DEADLETTER) == [], "nothing was poison"


# --- (b) a header byte that is not UTF-8 ----------------------------------------------


@pytest.mark.parametrize("mode", ["none", "standard", "github", "basic", "api-key"])
async def test_a_latin1_header_byte_is_read_as_latin1_on_every_webhook(
    settings: CommonSettings, mode: str
) -> None:
    hook = await create_webhook(settings.database_url, auth_mode=mode)
    async with running_gateway(settings) as gw:
        lead = orjson.dumps({"phone_number": "+14155550100"})
        status, answer = await post(gw, hook, lead, JSON, LATIN1_AGENT, (b"X-Note", b"\xff\xfe"))
        assert status == 202, answer
        status, answer = await post(gw, hook, b"firstname=no+contact", FORM, LATIN1_AGENT)
        assert status == 400, answer
        [raw] = [decode_raw(m) for m in await read_topic(settings, topics.RAW, min_count=1)]
        assert isinstance(raw, LeadReceived)
        assert raw.request.headers["user-agent"] == "Caf\xe9Client"
        assert raw.request.headers["x-note"] == "\xff\xfe"
        [rejected] = [
            decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES, min_count=1)
        ]
        assert rejected.request.headers["user-agent"] == "Caf\xe9Client"


# --- (c) a rejection whose body holds NUL -----------------------------------------------


async def test_a_rejection_holding_nul_is_recorded_once_and_not_retried(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    bodies = [
        (orjson.dumps({"phone_number": "+14155550100", "k\x00": 1}), JSON),
        (b'{"phone_number": "+14155550100", "n": "\x00"}', JSON),  # raw NUL: not JSON
        (orjson.dumps({"firstname": "Ann\x00"}), JSON),  # no contact: a validation error
        (b"phone_number=%2B14155550100&k%00=1", FORM),
    ]
    dropped, failed = (
        PAYLOAD_DROPPED.labels("database"),
        REJECTION_PUBLISH_FAILED.labels("database"),
    )
    before = (dropped._value.get(), failed._value.get())
    async with running_gateway(settings, rejection_retry_s=900) as gw:
        ids = []
        for body, kind in bodies:
            status, answer = await post(gw, hook, body, kind)
            assert status == 400, answer
            ids.append(answer["request_id"])
        rows = await eventually(
            lambda: request_rows(settings, ids),
            until=lambda r: len(r) == len(ids),
            deadline_s=30,
            what="every rejection stored",
        )
        await eventually(lambda: _none_left(gw), deadline_s=10, what="no rejection left recording")
    assert {r["status"] for r in rows.values()} == {"rejected"}
    stored = [r["result"]["request"]["payload"] for r in rows.values()]
    assert all(p is not None for p in stored), "recorded with the payload, NUL as U+FFFD"
    assert "\ufffd" in orjson.dumps(stored).decode()
    outcomes = [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]
    assert sorted(str(o.request_id) for o in outcomes) == sorted(ids), "each once"
    assert all(isinstance(o, LeadRejected) for o in outcomes)
    assert (dropped._value.get(), failed._value.get()) == before


async def _none_left(gw: Gateway) -> bool:
    return len(gw.deps.background) == 0


# --- (d) NUL in a value -----------------------------------------------------------------


async def test_a_nul_in_a_name_value_is_taken_out_and_the_lead_processed(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    async with gateway_and_processor(settings) as gw:
        body = orjson.dumps({"firstname": "Ann\x00", "phone_number": "+14155550100"})
        status, answer = await post(gw, hook, body, JSON, WAIT)
    assert status == 200, answer
    assert answer["status"] == "processed" and answer["is_new_contact"] is True
    [contact] = await fetch(
        settings,
        "SELECT first_name, phone FROM contacts WHERE workspace_id = $1",
        hook.workspace_id,
    )
    assert contact == {"first_name": "Ann", "phone": "+14155550100"}
    rows = await request_rows(settings, [answer["request_id"]])
    assert rows[answer["request_id"]]["status"] == "processed"


# --- (e) spellings of one identity -------------------------------------------------------


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def test_spellings_of_one_identity_make_one_contact(settings: CommonSettings) -> None:
    hook = await create_webhook(settings.database_url, region="US")
    async with gateway_and_processor(settings) as gw:
        answers = []
        for body in (
            {"email": "benjie@example.com", "firstname": "Benjie"},
            {"email": full_width("benjie") + "@example.com"},
            {"phone_number": "0044 20 7946 0958", "firstname": "Pat"},
            {"phone_number": "011 44 20 7946 0958"},
        ):
            status, answer = await post(gw, hook, orjson.dumps(body), JSON, WAIT)
            assert status == 200 and answer["status"] == "processed", answer
            answers.append(answer)
    assert [a["is_new_contact"] for a in answers] == [True, False, True, False]
    contacts = await fetch(
        settings,
        "SELECT email, phone FROM contacts WHERE workspace_id = $1 ORDER BY created_at",
        hook.workspace_id,
    )
    assert contacts == [
        {"email": "benjie@example.com", "phone": None},
        {"email": None, "phone": "+442079460958"},
    ]
