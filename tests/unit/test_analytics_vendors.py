"""Vendor scorecards' pure parts: the rejection reasons' fixed set, a batch's increments,
a window's figures; and the scorecards read through the fake repository."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.analytics import handlers, queries
from services.analytics.alerts import Thresholds
from services.analytics.fake_repository import FakeAnalytics
from services.analytics.vendors import COLUMNS, REASONS, VendorCounts, vendor_reason, vendor_window
from tests.support.events import failed, processed, rejected

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
CONFIG = handlers.Config(accuracy=0.01, dedupe_days=30, thresholds=Thresholds(10.0, 1000.0, 20, 5))


def test_reasons_fold_into_a_fixed_set() -> None:
    assert REASONS == ("validation", "not_accepted", "duplicate_lead", "suppressed", "other")
    folded = {
        r: vendor_reason(r)
        for r in ("validation", "invalid_body", "invalid_idempotency_key", "not_accepted")
    }
    assert folded == {
        "validation": "validation",
        "invalid_body": "validation",
        "invalid_idempotency_key": "validation",
        "not_accepted": "not_accepted",
    }
    assert vendor_reason("duplicate_lead") == "duplicate_lead"
    assert vendor_reason("suppressed") == "suppressed"
    for odd in ("idempotency_conflict", "", "x" * 500, "Suppressed"):
        assert vendor_reason(odd) == "other"


def test_counts_add_up_to_received() -> None:
    ws, hook = uuid.uuid4(), uuid.uuid4()
    c = VendorCounts()
    for e in [
        processed(ws, hook, match_type="new"),
        processed(ws, hook, match_type="email"),
        failed(ws, hook),
        rejected(ws, hook, reason="suppressed"),
        rejected(ws, hook, reason="idempotency_conflict"),
    ]:
        c.add(e)
    row = dict(zip(COLUMNS, c.row(), strict=True))
    assert row == {
        "received": 5,
        "accepted": 2,
        "new_contacts": 1,
        "failed": 1,
        "rejected_validation": 0,
        "rejected_not_accepted": 0,
        "rejected_duplicate_lead": 0,
        "rejected_suppressed": 1,
        "rejected_other": 1,
    }
    w = vendor_window(row, {"notified": 2, "p50": 1.23456, "p95": -0.5})
    assert (w.received, w.rejected, w.acceptance_rate, w.new_contact_rate) == (5, 2, 40.0, 50.0)
    assert (w.speed_to_lead.p50_seconds, w.speed_to_lead.p95_seconds) == (1.235, 0.0)
    empty = vendor_window(None, None)
    assert (empty.received, empty.acceptance_rate, empty.speed_to_lead.p50_seconds) == (
        0,
        None,
        None,
    )


async def test_windows_and_speed_through_the_fake() -> None:
    repo = FakeAnalytics()
    ws, hook, quiet = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    repo.configure(ws, "Acme", {hook: "LeadConduit", quiet: "Quiet"})
    recent = [processed(ws, hook, received_at=NOW - timedelta(minutes=i)) for i in range(3)]
    old = processed(ws, hook, received_at=NOW - timedelta(days=8))
    events = [*recent, old, rejected(ws, hook, reason="duplicate_lead", received_at=NOW)]
    await handlers.count_outcomes(events, repo=repo, config=CONFIG, now=NOW)
    for e, seconds in zip([*recent, old], [10, 20, 30, 40], strict=True):
        repo.deliver(e.event_id, e.received_at + timedelta(seconds=seconds))
    body = await queries.vendor_scorecards(repo, ws, now=NOW)
    assert body is not None
    assert [v.name for v in body.vendors] == ["LeadConduit", "Quiet"]
    day, month = body.vendors[0].windows.last_24h, body.vendors[0].windows.last_30d
    assert (day.received, day.accepted, day.rejected_by_reason.duplicate_lead) == (4, 3, 1)
    assert (day.speed_to_lead.notified, day.speed_to_lead.p50_seconds) == (3, 20.0)
    assert (month.received, month.speed_to_lead.notified, month.speed_to_lead.p50_seconds) == (
        5,
        4,
        25.0,
    )
    assert await queries.vendor_scorecards(repo, uuid.uuid4(), now=NOW) is None
