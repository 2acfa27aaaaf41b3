"""The processor alone against real Kafka and Postgres (the statements of issue 18): a
phone match never replaces a CRM id (its pair recorded); a webhook's duplicate-lead
window, within one batch and across batches, and not across webhooks; a suppressed lead
rejected, then flagged. Through the gateway: tests/e2e/test_lead_buying_pipeline.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import pytest

from services.processor.settings import ProcessorSettings
from shared import topics
from shared.events import LeadProcessed, LeadRejected
from shared.settings import CommonSettings
from shared.suppression import entry_hash
from tests.support.events import publish_events, received
from tests.support.processor import (
    outcomes,
    prepare_topics,
    processor_settings,
    processors,
    seed_tenant,
    wait_processed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def psettings(settings: CommonSettings) -> ProcessorSettings:
    s = processor_settings(settings)
    await prepare_topics(s)
    return s


async def test_crm_ids_windows_and_suppression_on_postgres(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    t = await seed_tenant(db, webhooks=2)
    windowed, plain = t.webhook_ids
    await db.execute("UPDATE webhooks SET duplicate_window_s = 86400 WHERE id = $1", windowed)
    await db.execute(
        "INSERT INTO suppressions (workspace_id, kind, value_sha256) VALUES ($1, 'email', $2)",
        t.workspace_id,
        entry_hash("email", "stop@acme.io", "US"),
    )
    now = datetime.now(UTC)
    on_plain, on_windowed = (
        partial(received, t.workspace_id, plain),
        partial(received, t.workspace_id, windowed),
    )
    first = [
        on_plain(crm_id="X", phone="+16266633444", first_name="Xena"),
        on_windowed(phone="+12025550143", received_at=now),
        on_windowed(phone="+12025550143", received_at=now + timedelta(minutes=1)),
        on_plain(phone="+12025550150", email="stop@acme.io"),
    ]
    second = [
        on_plain(crm_id="Y", phone="+16266633444", first_name="Yan"),
        on_windowed(
            email="new@acme.io", phone="+12025550143", received_at=now + timedelta(hours=2)
        ),
        on_plain(phone="+12025550143"),
    ]
    async with processors(psettings):
        await publish_events(psettings, first, logical=topics.RAW)
        await wait_processed(psettings.database_url, [e.request_id for e in first])
        await db.execute(
            "UPDATE workspaces SET suppressed_mode = 'flag' WHERE id = $1", t.workspace_id
        )
        flagged = on_plain(phone="+12025550151", email="stop@acme.io")
        await publish_events(psettings, [*second, flagged], logical=topics.RAW)
        await wait_processed(psettings.database_url, [e.request_id for e in [*second, flagged]])

    got = {o.request_id: o for o in await outcomes(psettings)}
    x, y = got[first[0].request_id], got[second[0].request_id]
    assert isinstance(x, LeadProcessed) and isinstance(y, LeadProcessed)
    assert y.contact.id != x.contact.id and y.possible_duplicates == [x.contact.id]
    crm = dict(
        await db.fetch(
            "SELECT id, crm_id FROM contacts WHERE id = ANY($1::uuid[])",
            [x.contact.id, y.contact.id],
        )
    )
    assert crm == {x.contact.id: "X", y.contact.id: "Y"}

    window = [got[e.request_id] for e in (first[1], first[2], second[1], second[2])]
    assert [type(o).__name__ for o in window] == [
        "LeadProcessed",
        "LeadRejected",  # the same batch, a minute later
        "LeadRejected",  # a later batch, by phone, two hours later
        "LeadProcessed",  # another webhook: contact dedupe as before
    ]
    assert all(o.reason == "duplicate_lead" for o in window if isinstance(o, LeadRejected))
    suppressed, flag = got[first[3].request_id], got[flagged.request_id]
    assert isinstance(suppressed, LeadRejected) and suppressed.reason == "suppressed"
    assert isinstance(flag, LeadProcessed) and flag.flags == ["suppressed"]
    assert await db.fetchval("SELECT count(*) FROM leads WHERE webhook_id = $1", windowed) == 1
    rows = await db.fetch(
        "SELECT status, error->>'type' AS reason FROM webhook_requests WHERE request_id = ANY($1::uuid[])",
        [first[2].request_id, first[3].request_id],
    )
    assert sorted((r["status"], r["reason"]) for r in rows) == [
        ("rejected", "duplicate_lead"),
        ("rejected", "suppressed"),
    ]
    # One key row per webhook, key field and value: the windowed webhook's phone only.
    keys = await db.fetch("SELECT webhook_id, key_type FROM webhook_lead_keys")
    assert [(r["webhook_id"], r["key_type"]) for r in keys] == [(windowed, "phone")]
