"""The processor against real Kafka and Postgres: dedupe priority, never blanking, possible
duplicates (and the CLI that lists them), outcomes, board rules, vendor retries, poison."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from functools import partial

import asyncpg
import orjson
import pytest

from services.ingest.responses import outcome_body
from services.processor.settings import ProcessorSettings
from services.processor.transaction import conflict_request_id
from shared import done, topics
from shared.events import (
    LeadFailed,
    LeadProcessed,
    LeadRejected,
    decode_outcome,
    encode,
    outcome_event_id,
)
from shared.settings import CommonSettings
from tests.support.events import publish_events, received
from tests.support.polling import eventually
from tests.support.processes import env_for
from tests.support.processor import (
    add_rule,
    outcomes,
    prepare_topics,
    processor_settings,
    processors,
    seed_tenant,
    tally,
    wait_processed,
)
from tests.support.topics import read_topic, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture
async def psettings(settings: CommonSettings) -> ProcessorSettings:
    s = processor_settings(settings)
    await prepare_topics(s)
    return s


async def test_dedupe_priority_never_blank_and_possible_duplicates(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    t = await seed_tenant(db)
    lead = partial(received, t.workspace_id, t.webhook_id)
    p1, p2 = "+15550100001", "+15550100002"
    first = [
        lead(crm_id="c1", phone=p1, email="ann@x.io", first_name="Ann", last_name="Lee"),
        lead(phone=p2, email="bob@x.io", first_name="Bob", last_name=None),
    ]
    second = [
        # CRM id wins over the phone that belongs to Bob; a blank first name blanks nothing.
        lead(crm_id="c1", phone=p2, email="ann@x.io", first_name="", product="Kitchen"),
        # Phone wins over the email that belongs to Ann.
        lead(phone=p2, email="ann@x.io", first_name=None, last_name=None, product=None),
        # Email alone finds Bob; a free CRM id joins his contact.
        lead(email="bob@x.io", first_name=None, last_name="Stone", product=None),
        lead(crm_id="c7", email="bob@x.io", first_name=None, last_name=None, product=None),
    ]
    async with processors(psettings):
        await publish_events(psettings, first, logical=topics.RAW)
        await wait_processed(psettings.database_url, [e.request_id for e in first])
        # One partition, so in order (one batch, likely).
        await publish_events(psettings, second, logical=topics.RAW)
        await wait_processed(psettings.database_url, [e.request_id for e in second])

    ann_requests = {first[0].request_id, second[0].request_id}  # by CRM id c1
    counts = await tally(
        psettings.database_url,
        first + second,
        person=lambda e: "ann" if e.request_id in ann_requests else "bob",
    )
    counts.report("dedupe")
    counts.assert_exactly_once()
    assert counts.delivered == 6

    got = {o.request_id: o for o in await outcomes(psettings) if isinstance(o, LeadProcessed)}
    assert len(got) == 6
    ann, bob = got[first[0].request_id].contact.id, got[first[1].request_id].contact.id
    expect = [
        (first[0], "new", ann, True, []),
        (first[1], "new", bob, True, []),
        (second[0], "crm_id", ann, False, [bob]),
        (second[1], "phone", bob, False, [ann]),
        (second[2], "email", bob, False, []),
        (second[3], "email", bob, False, []),
    ]
    for ev, match, contact, is_new, dups in expect:
        o = got[ev.request_id]
        assert (o.match_type, o.contact.id, o.is_new_contact, o.possible_duplicates) == (
            match,
            contact,
            is_new,
            dups,
        )
        assert o.action == ("created" if is_new else "updated")
        assert o.event_id == outcome_event_id(ev.request_id)
        assert o.request == ev.request and o.lead == ev.lead
        assert {
            "authentication",
            "enqueue",
            "contact_processing",
            "board_assignment",
            "lead_creation",
        } <= set(o.processing.steps)
        assert o.processing.start == ev.received_at and o.processing.duration_ms >= 0

    rows = {
        r["id"]: r
        for r in await db.fetch("SELECT * FROM contacts WHERE workspace_id = $1", t.workspace_id)
    }
    assert rows[ann]["first_name"] == "Ann" and rows[ann]["last_name"] == "Lee"
    assert rows[ann]["product"] == "Kitchen" and rows[ann]["phone"] == p1
    assert rows[bob]["crm_id"] == "c7" and rows[bob]["last_name"] == "Stone"
    assert rows[bob]["phone"] == p2 and rows[bob]["email"] == "bob@x.io"

    # The stored result is the published outcome; lead rows point at the outcome's contact.
    stored = await db.fetch(
        "SELECT request_id, status, result::text AS result FROM webhook_requests WHERE workspace_id = $1",
        t.workspace_id,
    )
    assert {r["status"] for r in stored} == {"processed"}
    for r in stored:
        assert decode_outcome(r["result"].encode()) == got[r["request_id"]]
    leads = {
        r["request_id"]: r
        for r in await db.fetch("SELECT * FROM leads WHERE workspace_id = $1", t.workspace_id)
    }
    for rid, o in got.items():
        assert leads[rid]["id"] == o.lead_id and leads[rid]["contact_id"] == o.contact.id

    pairs = await db.fetch(
        "SELECT contact_id, other_contact_id, key_type FROM possible_duplicates WHERE workspace_id = $1",
        t.workspace_id,
    )
    assert {(r["contact_id"], r["other_contact_id"], r["key_type"]) for r in pairs} == {
        (ann, bob, "phone"),
        (bob, ann, "email"),
    }

    env = env_for(psettings)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "cli.main",
            "duplicates",
            "list",
            "--workspace",
            str(t.workspace_id),
            "--json",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    doc = orjson.loads(result.stdout)
    assert doc["count"] == 2
    assert {
        (p["contact"]["id"], p["other_contact"]["id"], p["key_type"], p["shared_value"])
        for p in doc["pairs"]
    } == {
        (str(ann), str(bob), "phone", p2),
        (str(bob), str(ann), "email", "ann@x.io"),
    }
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "contacts", "show", str(bob), "--json"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    assert len(orjson.loads(shown.stdout)["leads"]) == 4


async def test_board_rules_order_first_match_and_conditions(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    t = await seed_tenant(db, webhooks=2, boards=["kitchen", "hook-b", "hot", "ca", "never"])
    hook_a, hook_b = t.webhook_ids
    await add_rule(
        db,
        t,
        "kitchen",
        priority=10,
        conditions=[{"field": "product", "op": "eq", "value": "kitchen"}],
    )
    await add_rule(db, t, "hook-b", priority=20, webhook_id=hook_b)
    await add_rule(
        db,
        t,
        "hot",
        priority=30,
        conditions=[{"field": "lead_status", "op": "in", "value": ["HOT", "urgent"]}],
    )
    await add_rule(
        db, t, "ca", priority=40, conditions=[{"field": "state", "op": "eq", "value": "ca"}]
    )
    # Same priority, created later: never reached while "ca" matches the same leads.
    await add_rule(
        db, t, "never", priority=40, conditions=[{"field": "state", "op": "eq", "value": "CA"}]
    )
    # A rule for another webhook and product that matches nothing here.
    await add_rule(
        db,
        t,
        "never",
        priority=1,
        webhook_id=hook_b,
        conditions=[{"field": "product", "op": "eq", "value": "Solar"}],
    )

    events = [
        received(
            t.workspace_id, hook_b, phone="+15550200001", product="Kitchen", lead_status="hot"
        ),
        received(t.workspace_id, hook_b, phone="+15550200002", product="Bath"),
        received(t.workspace_id, hook_a, phone="+15550200003", product="Bath", lead_status="Hot"),
        received(
            t.workspace_id, hook_a, phone="+15550200004", product="Bath", custom={"state": "CA"}
        ),
        received(t.workspace_id, hook_a, phone="+15550200005", product="Bath"),
    ]
    later = received(
        t.workspace_id, hook_a, phone="+15550200001", product="Bath", lead_status="new"
    )
    async with processors(psettings):
        await publish_events(psettings, events, logical=topics.RAW)
        await wait_processed(psettings.database_url, [e.request_id for e in events])
        await publish_events(psettings, [later], logical=topics.RAW)
        await wait_processed(psettings.database_url, [later.request_id])

    got = {o.request_id: o for o in await outcomes(psettings) if isinstance(o, LeadProcessed)}
    names = {v: k for k, v in t.boards.items()}
    expected = ["kitchen", "hook-b", "hot", "ca", None]
    for ev, board in zip(events, expected, strict=True):
        o = got[ev.request_id]
        assert o.rule_applied is (board is not None)
        assert o.contact.board_name == board and names.get(o.contact.board_id) == board  # type: ignore[arg-type]
    # No rule matches the later lead: the contact keeps the board it had.
    assert got[later.request_id].rule_applied is False
    assert got[later.request_id].contact.board_name == "kitchen"
    boards = dict(
        await db.fetch(
            "SELECT c.phone, b.name FROM contacts c LEFT JOIN boards b ON b.id = c.board_id WHERE c.workspace_id = $1",
            t.workspace_id,
        )
    )
    assert boards == {
        "+15550200001": "kitchen",
        "+15550200002": "hook-b",
        "+15550200003": "hot",
        "+15550200004": "ca",
        "+15550200005": None,
    }


async def test_vendor_retry_same_key_once_and_conflicting_body_rejected(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    """U3: the same idempotency key twice is one lead; with another body it is rejected."""
    t = await seed_tenant(db)
    lead = partial(received, t.workspace_id, t.webhook_id)
    original = lead(idempotency_key="msg_1", phone="+15550300001", email="u3@x.io")
    retry = lead(
        idempotency_key="msg_1",
        phone="+15550300001",
        email="u3@x.io",
        request_id=original.request_id,
    )
    conflicting = lead(idempotency_key="msg_1", phone="+15550300999", first_name="Eve")
    assert conflicting.request_id == original.request_id
    assert conflicting.body_sha256 != original.body_sha256
    async with processors(psettings):
        await publish_events(psettings, [original, retry, conflicting], logical=topics.RAW)
        await wait_processed(
            psettings.database_url, [original.request_id, conflict_request_id(conflicting)]
        )
        # Redelivered later, both change nothing.
        await publish_events(psettings, [conflicting, original], logical=topics.RAW)
        await wait_caught_up(psettings, psettings.processor_group, topics.RAW, deadline_s=30)

    leads = await db.fetchval("SELECT count(*) FROM leads WHERE webhook_id = $1", t.webhook_id)
    contacts = await db.fetchval(
        "SELECT count(*) FROM contacts WHERE workspace_id = $1", t.workspace_id
    )
    statuses = dict(
        await db.fetch(
            "SELECT request_id, status FROM webhook_requests WHERE workspace_id = $1",
            t.workspace_id,
        )
    )
    print(f"[U3] leads={leads} contacts={contacts} requests={statuses}")
    assert (leads, contacts) == (1, 1)
    assert statuses == {
        original.request_id: "processed",
        conflict_request_id(conflicting): "rejected",
    }

    got = await outcomes(psettings)
    distinct = {o.event_id for o in got}
    print(f"[U3] outcome messages={len(got)} distinct={len(distinct)}")
    assert distinct == {
        outcome_event_id(original.request_id),
        outcome_event_id(conflict_request_id(conflicting)),
    }
    rejected = [o for o in got if isinstance(o, LeadRejected)]
    assert rejected and all(
        o.reason == "idempotency_conflict"
        and o.status_code == 409
        and o.request_id == conflict_request_id(conflicting)
        for o in rejected
    )


async def test_only_awaited_requests_wake_the_gateway(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    """``leadwire_request_done`` is sent for a request a client waits for (``awaited``,
    ``Prefer: wait``), not for every lead: the gateway's workers are not woken per lead."""
    t = await seed_tenant(db)
    lead = partial(received, t.workspace_id, t.webhook_id)
    waited = lead(phone="+15550400001").model_copy(update={"awaited": True})
    plain = [lead(phone=f"+1555040000{i}") for i in range(2, 5)]
    heard: list[str] = []
    listening = await asyncpg.connect(psettings.database_url)
    await listening.add_listener("leadwire_request_done", lambda *a: heard.append(a[3]))
    try:
        async with processors(psettings):
            await publish_events(psettings, [plain[0], waited, *plain[1:]], logical=topics.RAW)
            await wait_processed(psettings.database_url, [e.request_id for e in [waited, *plain]])
        # A query on the listening connection delivers every notification committed so far.
        await eventually(
            lambda: listening.fetchval("SELECT 1"),
            until=lambda _: len(heard) >= 1,
            deadline_s=10,
            what="the awaited request's notification",
        )
        stored = await db.fetchrow(
            "SELECT status, result, error FROM webhook_requests WHERE request_id = $1",
            waited.request_id,
        )
    finally:
        await listening.close()
    assert len(heard) == 1
    # It carries the answer: the same one the gateway builds from the stored row.
    request_id, row = done.decode(heard[0])
    assert request_id == waited.request_id and row is not None
    assert stored is not None and row["status"] == stored["status"] == "processed"
    ids = {"webhook_id": t.webhook_id, "request_id": request_id, "duplicate": False}
    assert outcome_body(row, **ids) == outcome_body(dict(stored), **ids)


async def test_poison_messages_fail_alone_and_are_dead_lettered(
    psettings: ProcessorSettings, db: asyncpg.Connection
) -> None:
    t = await seed_tenant(db)
    good1 = received(t.workspace_id, t.webhook_id, phone="+15550400001")
    unknown_hook = received(t.workspace_id, uuid.uuid4(), phone="+15550400002")
    bad_schema = orjson.loads(encode(received(t.workspace_id, t.webhook_id, phone="+15550400003")))
    bad_schema["lead"]["phone"] = 15550400003  # a number, not a string
    not_json = b"\x00garbage{"
    nul = received(
        t.workspace_id, t.webhook_id, phone="+15550400004", first_name="Ann\x00"
    )  # Postgres text refuses NUL
    good2 = received(t.workspace_id, t.webhook_id, phone="+15550400005")
    key = str(t.workspace_id)
    async with processors(psettings) as running:
        await publish_events(
            psettings,
            [good1, unknown_hook, orjson.dumps(bad_schema), not_json, nul, good2],
            logical=topics.RAW,
            key=key,
        )
        await wait_processed(
            psettings.database_url,
            [
                good1.request_id,
                good2.request_id,
                unknown_hook.request_id,
                uuid.UUID(bad_schema["request_id"]),
                nul.request_id,
            ],
        )
        dead = await eventually(
            lambda: read_topic(psettings, topics.DEADLETTER),
            until=lambda d: len(d) >= 4,
            deadline_s=30,
            what="4 dead letters",
        )
        assert not running[0].task.done()

    statuses = dict(
        await db.fetch(
            "SELECT request_id, status FROM webhook_requests WHERE workspace_id = $1",
            t.workspace_id,
        )
    )
    assert statuses == {
        good1.request_id: "processed",
        good2.request_id: "processed",
        unknown_hook.request_id: "failed",
        uuid.UUID(bad_schema["request_id"]): "failed",
        nul.request_id: "failed",
    }
    entries = [orjson.loads(d) for d in dead]
    reasons = sorted(e["reason"].split(": ")[1] for e in entries)
    print(f"[poison] dead letters={len(entries)} reasons={reasons}")
    assert len(entries) == 4
    assert reasons == sorted(
        ["UnknownWebhook", "SchemaError", "SchemaError", "CharacterNotInRepertoireError"]
    )
    assert sorted(e["reason_code"] for e in entries) == [
        "permanent",
        "permanent",
        "undecodable",
        "undecodable",
    ]
    assert all("15550400" not in e["reason"] for e in entries)
    failed = {o.request_id: o for o in await outcomes(psettings) if isinstance(o, LeadFailed)}
    assert set(failed) == {
        unknown_hook.request_id,
        uuid.UUID(bad_schema["request_id"]),
        nul.request_id,
    }
    assert failed[unknown_hook.request_id].error.type == "UnknownWebhook"
    assert failed[nul.request_id].lead is not None
