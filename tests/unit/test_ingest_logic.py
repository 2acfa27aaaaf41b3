"""Pure gateway logic: token buckets, JSON bounds, Prefer parsing, config cache, outcomes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.config import ConfigCache, ConfigUnavailable, build_config
from services.ingest.limits import JsonShapeError, TokenBuckets, check_json_shape
from services.ingest.metrics import WebhookLabels
from services.ingest.openapi import SPEC, render_html
from services.ingest.recent import AcceptedRequest, RecentRequests
from services.ingest.responses import outcome_body, status_summary
from services.ingest.waiting import wait_preference
from tests.support.ingest import webhook_row

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock=clock)
    assert all(buckets.take("a", 60, 3) == 0 for _ in range(3))
    wait = buckets.take("a", 60, 3)
    assert 0.9 < wait <= 1.0  # 60/min = one a second
    assert buckets.take("b", 60, 3) == 0  # another key is untouched
    clock.now += 1.0
    assert buckets.take("a", 60, 3) == 0


def test_token_buckets_are_bounded() -> None:
    buckets = TokenBuckets(max_keys=10)
    for i in range(100):
        buckets.take(i, 60, 1)
    assert len(buckets) == 10


def test_json_shape_bounds() -> None:
    check_json_shape({"a": [1, 2, {"b": 3}]}, max_depth=3, max_keys=10)
    deep: Any = 1
    for _ in range(40):
        deep = {"x": deep}
    with pytest.raises(JsonShapeError) as exc:
        check_json_shape(deep, max_depth=32, max_keys=1000)
    assert exc.value.code == "too_deep"
    with pytest.raises(JsonShapeError) as exc:
        check_json_shape({str(i): i for i in range(50)}, max_depth=5, max_keys=49)
    assert exc.value.code == "too_many_fields"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=40,
)


def _depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(c) for c in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(c) for c in v), default=0)
    return 0


def _count(v: Any) -> int:
    if isinstance(v, dict):
        return len(v) + sum(_count(c) for c in v.values())
    if isinstance(v, list):
        return len(v) + sum(_count(c) for c in v)
    return 0


@settings(max_examples=200, deadline=None)
@given(_json, st.integers(1, 6), st.integers(0, 30))
def test_json_shape_agrees_with_a_recursive_definition(
    doc: Any, max_depth: int, max_keys: int
) -> None:
    expected_ok = _depth(doc) <= max_depth and _count(doc) <= max_keys
    try:
        check_json_shape(doc, max_depth=max_depth, max_keys=max_keys)
        ok = True
    except JsonShapeError:
        ok = False
    assert ok == expected_ok


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 0.0),
        ("wait=5", 5.0),
        ("respond-async, wait=10", 10.0),
        ("wait=100", 30.0),
        ("wait=0", 0.0),
        ("wait=-3", 0.0),
        ("wait=abc", 0.0),
        ("wait=nan", 0.0),
        ("wait=inf", 0.0),
        ('wait="2"', 2.0),
        ("return=minimal", 0.0),
    ],
)
def test_wait_preference(header: str | None, expected: float) -> None:
    assert wait_preference(header, 30.0) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_wait_preference_never_raises(header: str) -> None:
    assert 0 <= wait_preference(header, 30.0) <= 30


def test_webhook_labels_are_bounded() -> None:
    labels = WebhookLabels(limit=2)
    assert labels("a") == "a" and labels("b") == "b" and labels("c") == "other"
    assert labels("a") == "a" and labels(None) == "unknown"


def test_build_config_uses_template_mapping_when_empty() -> None:
    config = build_config(webhook_row())
    assert config.mapping is not None and config.problem is None and config.active


def test_build_config_flags_problems() -> None:
    assert (
        build_config(webhook_row(auth_mode="standard", secret=None)).problem
        == "auth_secret_missing"
    )
    assert (
        build_config(webhook_row(auth_mode="standard", secret="whsec_%%%")).problem
        == "auth_secret_malformed"
    )
    assert (
        build_config(webhook_row(mapping=[{"target": "nope"}], template="none")).problem
        == "mapping_invalid"
    )
    assert not build_config(webhook_row(workspace_status="disabled")).active
    assert not build_config(webhook_row(status="disabled")).active


def test_build_config_previous_secret_needs_expiry() -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    config = build_config(
        webhook_row(
            auth_mode="github",
            secret="a" * 20,
            secret_previous="b" * 20,
            secret_previous_expires_at=expires,
        )
    )
    assert len(config.secrets) == 2 and config.secrets[1].expires_at == pytest.approx(
        expires.timestamp()
    )
    config = build_config(
        webhook_row(auth_mode="github", secret="a" * 20, secret_previous="b" * 20)
    )
    assert len(config.secrets) == 1


async def test_config_cache_ttl_negative_and_invalidation() -> None:
    clock = FakeClock()
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    calls: list[uuid.UUID] = []

    async def load(wid: uuid.UUID) -> dict[str, Any] | None:
        calls.append(wid)
        await asyncio.sleep(0)
        return rows.get(wid)

    cache = ConfigCache(load, ttl_s=60, negative_ttl_s=5, clock=clock)
    row = webhook_row()
    rows[row["id"]] = row
    # Concurrent misses share one query.
    results = await asyncio.gather(*(cache.get(row["id"]) for _ in range(10)))
    assert all(r is not None for r in results) and len(calls) == 1
    await cache.get(row["id"])
    assert len(calls) == 1
    clock.now += 61
    await cache.get(row["id"])
    assert len(calls) == 2
    cache.invalidate(f"webhooks:{row['id']}")
    await cache.get(row["id"])
    assert len(calls) == 3
    cache.invalidate(f"workspaces:{row['workspace_id']}")
    await cache.get(row["id"])
    assert len(calls) == 4

    unknown = uuid.uuid4()
    for _ in range(50):
        assert await cache.get(unknown) is None
    assert calls.count(unknown) == 1
    clock.now += 6
    assert await cache.get(unknown) is None
    assert calls.count(unknown) == 2


async def test_config_cache_serves_stale_when_database_is_away() -> None:
    clock = FakeClock()
    row = webhook_row()
    up = True

    async def load(wid: uuid.UUID) -> dict[str, Any] | None:
        if not up:
            raise OSError("connection refused")
        return row if wid == row["id"] else None

    cache = ConfigCache(load, ttl_s=60, clock=clock)
    assert await cache.get(row["id"]) is not None
    up = False
    clock.now += 120
    assert await cache.get(row["id"]) is not None  # stale beats refusing leads
    with pytest.raises(ConfigUnavailable):
        await cache.get(uuid.uuid4())


def test_outcome_body_is_seed_shaped() -> None:
    rid, wid, cid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    row = {
        "status": "processed",
        "result": {
            "type": "lead.processed",
            "status": "processed",
            "contact": {"id": str(cid), "phone": "+16266633444"},
            "match_type": "crm_id",
            "is_new_contact": False,
            "rule_applied": True,
            "action": "updated",
            "processing": {"duration_ms": 12.4},
        },
    }
    status, body = outcome_body(row, webhook_id=wid, request_id=rid, duplicate=False)
    assert status == 200
    assert body.model_dump(mode="json") == {
        "success": True,
        "message": "Contact updated via crm_id match",
        "contact_id": str(cid),
        "webhook_id": str(wid),
        "rule_applied": True,
        "match_type": "crm_id",
        "is_new_contact": False,
        "processing_time": "12ms",
        "request_id": str(rid),
        "status": "processed",
    }
    failed = {
        "status": "failed",
        "result": {"status": "failed", "error": {"type": "poison", "message": "boom"}},
    }
    status, body = outcome_body(failed, webhook_id=wid, request_id=rid, duplicate=False)
    assert status == 422 and body.success is False and body.error.type == "poison"


def test_status_summary_has_no_personal_data() -> None:
    row = {
        "status": "processed",
        "result": {
            "status": "processed",
            "contact": {"id": "c", "phone": "+16266633444", "email": "a@b.co"},
            "lead": {"phone": "+16266633444"},
            "request": {"payload": {"phone": "+16266633444"}},
            "match_type": "new",
            "is_new_contact": True,
            "processing": {"duration_ms": 3},
        },
    }
    text = status_summary(row).model_dump_json()
    assert "6266633444" not in text and "a@b.co" not in text


def test_openapi_is_31_and_documents_every_route() -> None:
    assert SPEC["openapi"].startswith("3.1")
    assert {
        "/webhooks/{webhook_id}",
        "/webhooks/{webhook_id}/requests/{request_id}",
    } <= set(SPEC["paths"])
    # The ops routes are on the ops listener, not in the public API.
    assert not {"/healthz", "/readyz", "/metrics"} & set(SPEC["paths"])
    page = render_html()
    assert (
        "<h1>" in page
        and "/webhooks/{webhook_id}" in page
        and "http" not in page.split("<body>")[0].replace("http-equiv", "")
    )


def test_recent_requests_forget_the_oldest_past_their_bound() -> None:
    recent = RecentRequests(max_entries=3)
    ids = [uuid.uuid4() for _ in range(5)]
    entry = AcceptedRequest(uuid.uuid4(), "ab", datetime.now(UTC))
    for request_id in ids[:3]:
        recent.add(request_id, entry)
    recent.add(ids[0], entry)  # added again: now the newest
    recent.add(ids[3], entry)  # ids[1], the oldest, goes
    assert [recent.get(i) is not None for i in ids] == [True, False, True, True, False]
    recent.add(ids[4], entry)  # then ids[2]
    assert [recent.get(i) is not None for i in ids] == [True, False, False, True, True]
