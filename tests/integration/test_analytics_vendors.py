"""Vendor scorecards (issue 18, point 5) against the running analytics service on real
Kafka and Postgres: outcomes published to the outcome topic, the notifier's deliveries in
its ledger, the figures of each window read through the API (key-scoped) and Prometheus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, seed_webhooks
from tests.support.api import db_key
from tests.support.events import Outcome, failed, processed, publish_events, rejected
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

# Seconds from arrival to the first email or SMS of A's notified leads (24 h; one more
# 3 days ago); one of A's accepted leads is never notified.
DELAYS_24H = [2.0, 4.0, 6.0, 8.0, 100.0]
DELAY_3D = 10.0


def percentile_cont(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (Postgres' percentile_cont)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def vendor_a(ws: uuid.UUID, a: uuid.UUID, now: datetime) -> list[Outcome]:
    """A's leads: in the last hour 6 accepted (4 new contacts), 1 failed and 8 rejected
    (validation 2 + invalid_body 1 -> validation 3, not_accepted 1, duplicate_lead 2,
    suppressed 1, idempotency_conflict -> other 1); 3 days ago one more accepted (an
    existing contact); 10 days ago one more not_accepted."""
    recent = now - timedelta(minutes=5)
    events: list[Outcome] = [
        processed(ws, a, match_type="new" if i < 4 else "phone", received_at=recent)
        for i in range(6)
    ]
    events.append(failed(ws, a, received_at=recent))
    reasons = [
        ("validation", 400),
        ("validation", 400),
        ("invalid_body", 400),
        ("not_accepted", 400),
        ("duplicate_lead", 409),
        ("duplicate_lead", 409),
        ("suppressed", 409),
        ("idempotency_conflict", 409),
    ]
    events += [
        rejected(ws, a, reason=r, status_code=code, received_at=recent) for r, code in reasons
    ]
    events.append(processed(ws, a, match_type="phone", received_at=now - timedelta(days=3)))
    events.append(rejected(ws, a, reason="not_accepted", received_at=now - timedelta(days=10)))
    return events


async def deliver(database_url: str, ws: uuid.UUID, leads: list[tuple[Any, float]]) -> None:
    """The notifier's ledger rows of these leads, as it writes them: an email sent
    ``delay`` seconds after the lead arrived, an SMS a minute later, a real-time push at
    once (not a delivery to a person: not counted) and an email still pending."""
    rows = []
    for lead, delay in leads:
        at = lead.received_at
        for channel, status, sent in (
            ("email", "sent", at + timedelta(seconds=delay)),
            ("sms", "sent", at + timedelta(seconds=delay + 60)),
            ("realtime", "sent", at),
            ("email", "pending", None),
        ):
            recipient = f"{channel}-{status}"
            rows.append((uuid.uuid4(), lead.event_id, ws, channel, recipient, at, status, sent))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            """INSERT INTO notification_sends (id, event_id, workspace_id, channel, recipient,
                   kinds, summary, event_at, status, sent_at)
               VALUES ($1, $2, $3, $4, $5, 'lead_created', '{}', $6, $7, $8)""",
            rows,
        )
    finally:
        await conn.close()


def reasons(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(("validation", "not_accepted", "duplicate_lead", "suppressed", "other"))
    return {k: counts.get(k, 0) for k in base}


async def test_scorecards_per_vendor_and_window(settings: CommonSettings) -> None:
    ws, a, b, idle = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await seed_webhooks(
        settings.database_url, ws, "Acme Solar", {a: "LeadConduit", b: "Zapier", idle: "Idle"}
    )
    now = datetime.now(UTC)
    events = vendor_a(ws, a, now) + [processed(ws, b, match_type="new") for _ in range(2)]
    accepted_a = [e for e in events if e.type == "lead.processed" and e.webhook_id == a]
    notified = [*zip(accepted_a[:5], DELAYS_24H, strict=True), (accepted_a[6], DELAY_3D)]
    # Sent before analytics counts the leads (copied when counted), but one sent after.
    await deliver(settings.database_url, ws, notified[:4] + notified[5:])
    await publish_events(settings, events)
    own_key = await db_key(settings.database_url, ws, "read", name="vendors: own workspace")
    other_ws = uuid.uuid4()
    await seed_webhooks(settings.database_url, other_ws, "Other buyer", {uuid.uuid4(): "Theirs"})
    stranger = await db_key(settings.database_url, other_ws, "read", name="vendors: other")

    sync = analytics_settings(settings, analytics_delivery_sync_s=0.2)
    async with running_analytics(sync) as svc:
        path = f"/analytics/workspaces/{ws}/vendors"

        async def read() -> dict[str, Any]:
            status, body = await svc.get(path, key=own_key)
            assert status == 200, body
            return dict(body)

        await eventually(
            read,
            until=lambda b: sum(v["windows"]["last_30d"]["received"] for v in b["vendors"]) == 19,
            what="every outcome counted",
        )
        await deliver(settings.database_url, ws, notified[4:5])  # the delivery sync's
        body = await eventually(
            read,
            until=lambda b: (
                b["vendors"][0]["windows"]["last_24h"]["speed_to_lead"]["notified"] == 5
            ),
            what="the late delivery synced",
        )
        assert [v["webhook_id"] for v in body["vendors"]] == [str(a), str(b), str(idle)]
        card = body["vendors"][0]
        assert card["name"] == "LeadConduit"
        day, week, month = (card["windows"][w] for w in ("last_24h", "last_7d", "last_30d"))
        assert {k: day[k] for k in ("received", "accepted", "failed", "rejected")} == {
            "received": 15,
            "accepted": 6,
            "failed": 1,
            "rejected": 8,
        }
        assert day["rejected_by_reason"] == reasons(
            validation=3, not_accepted=1, duplicate_lead=2, suppressed=1, other=1
        )
        assert (day["acceptance_rate"], day["new_contacts"], day["new_contact_rate"]) == (
            40.0,
            4,
            66.67,
        )
        assert day["speed_to_lead"] == {
            "notified": 5,
            "p50_seconds": percentile_cont(DELAYS_24H, 0.5),
            "p95_seconds": round(percentile_cont(DELAYS_24H, 0.95), 3),
        }
        assert (week["received"], week["accepted"], week["acceptance_rate"]) == (16, 7, 43.75)
        week_delays = [*DELAYS_24H, DELAY_3D]
        assert week["speed_to_lead"] == {
            "notified": 6,
            "p50_seconds": percentile_cont(week_delays, 0.5),
            "p95_seconds": round(percentile_cont(week_delays, 0.95), 3),
        }
        assert (month["received"], month["rejected_by_reason"]["not_accepted"]) == (17, 2)
        assert month["acceptance_rate"] == 41.18
        zapier, quiet = body["vendors"][1]["windows"]["last_24h"], body["vendors"][2]["windows"]
        assert (zapier["received"], zapier["new_contact_rate"]) == (2, 100.0)
        assert zapier["speed_to_lead"] == {"notified": 0, "p50_seconds": None, "p95_seconds": None}
        assert quiet["last_30d"]["received"] == 0 and quiet["last_30d"]["acceptance_rate"] is None

        # Key-scoped: the operator's key sees it too; another workspace's key and an
        # unknown workspace answer 404; no key, 401.
        assert (await svc.get(path))[0] == 200
        assert (await svc.get(path, key=stranger))[0] == 404
        assert (await svc.get(f"/analytics/workspaces/{uuid.uuid4()}/vendors"))[0] == 404
        assert (await svc.get(path, key=None))[0] == 401

        # Prometheus: the last 24 h per labelled webhook, reasons from the fixed set.
        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            _, text = await svc.ops_get("/metrics")
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                if family.name.startswith("leadwire_analytics_vendor_")
                for s in family.samples
            }

        def sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
            full = {"workspace": str(ws), "webhook": str(a), **labels}
            return ("leadwire_analytics_vendor_last_24h_" + name, tuple(sorted(full.items())))

        metrics = await eventually(
            scrape, until=lambda m: m.get(sample("received")) == 15, what="vendor metrics"
        )
        assert metrics[sample("rejected", reason="duplicate_lead")] == 2
        assert metrics[sample("rejected", reason="validation")] == 3
        assert metrics[sample("accepted")] == 6 and metrics[sample("new_contacts")] == 4
        assert metrics[sample("speed_to_lead_seconds", quantile="0.5")] == 6.0
        reason_labels = {
            dict(labels)["reason"] for (name, labels) in metrics if name.endswith("_rejected")
        }
        assert reason_labels == {
            "validation",
            "not_accepted",
            "duplicate_lead",
            "suppressed",
            "other",
        }
