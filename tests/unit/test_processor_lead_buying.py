"""What a lead buyer refuses, and the CRM-id rule, on the in-memory repository: a phone or
email match never replaces a CRM id; the duplicate-lead window per webhook; the
suppression list (reject and flag); each lead's own step times. The same paths on real
Postgres and Kafka, through the gateway: tests/e2e/test_lead_buying_pipeline.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.processor.decode import Undecodable
from services.processor.dedupe import ContactState, IdentityIndex
from services.processor.fake_repository import FakeRepository, FakeTransaction
from services.processor.handlers import handle_batch
from services.processor.outcomes import Finished
from services.processor.repository import DuplicatePair, LeadKeyRow, LeadRow
from services.processor.screening import Screening
from services.processor.settings import ProcessorSettings
from shared.events import LeadProcessed, LeadReceived, LeadRejected, MappedLead, decode_outcome
from shared.kafka import PoisonMessage
from tests.support.events import as_messages, received

pytestmark = pytest.mark.unit

WS = uuid.uuid4()
DAY = 86_400


async def handle(repo: FakeRepository, events: Sequence[LeadReceived]) -> list[object]:
    got: list[Finished] = []

    async def publish(finished: Sequence[Finished]) -> None:
        got.extend(finished)

    await handle_batch(
        as_messages(events, topic="raw"),
        repo=repo,
        publish=publish,
        settings=ProcessorSettings(),
    )
    return [decode_outcome(f.payload) for f in got if f.payload is not None]


# --- a match never replaces a CRM id -------------------------------------------------


def test_a_phone_match_never_replaces_another_crm_id() -> None:
    a = ContactState(id=uuid.uuid4(), workspace_id=WS, crm_id="X", phone="+15550000001")
    index = IdentityIndex([a])
    d = index.apply(WS, MappedLead(crm_id="Y", phone="+15550000001", first_name="Yan"))
    # The lead is another CRM record: its own contact with its own CRM id; A keeps X and
    # the phone, and the shared phone is a possible duplicate.
    assert d.contact is not a and d.is_new_contact and d.match_type == "new"
    assert (d.contact.crm_id, d.contact.phone) == ("Y", None)
    assert (a.crm_id, a.phone, a.first_name) == ("X", "+15550000001", None)
    assert [(x.other_contact_id, x.key_type) for x in d.duplicates] == [(a.id, "phone")]


def test_the_next_key_without_a_crm_id_takes_the_lead() -> None:
    a = ContactState(id=uuid.uuid4(), workspace_id=WS, crm_id="X", phone="+15550000001")
    b = ContactState(id=uuid.uuid4(), workspace_id=WS, email="b@x.io")
    index = IdentityIndex([a, b])
    d = index.apply(WS, MappedLead(crm_id="Y", phone="+15550000001", email="b@x.io"))
    assert d.contact is b and d.match_type == "email" and b.crm_id == "Y" and a.crm_id == "X"
    assert [(x.other_contact_id, x.key_type) for x in d.duplicates] == [(a.id, "phone")]


async def test_crm_ids_survive_a_phone_match_through_the_handler() -> None:
    repo = FakeRepository()
    hook = repo.add_webhook(WS)
    ws_phone = "+15550000009"
    first = (await handle(repo, [received(WS, hook, crm_id="X", phone=ws_phone)]))[0]
    second = (await handle(repo, [received(WS, hook, crm_id="Y", phone=ws_phone)]))[0]
    by_x = (await handle(repo, [received(WS, hook, crm_id="X")]))[0]
    by_y = (await handle(repo, [received(WS, hook, crm_id="Y")]))[0]
    assert isinstance(first, LeadProcessed) and isinstance(second, LeadProcessed)
    assert isinstance(by_x, LeadProcessed) and isinstance(by_y, LeadProcessed)
    a, b = first.contact.id, second.contact.id
    assert a != b and second.possible_duplicates == [a] and second.lead.crm_id == "Y"
    assert repo.tables.contacts[a].crm_id == "X" and repo.tables.contacts[b].crm_id == "Y"
    # The next lead with only a CRM id finds its own contact, no new one.
    assert (by_x.match_type, by_x.contact.id) == ("crm_id", a)
    assert (by_y.match_type, by_y.contact.id) == ("crm_id", b)
    assert [(p.contact_id, p.other_contact_id, p.key_type) for p in repo.tables.pairs.values()] == [
        (b, a, "phone")
    ]


# --- the duplicate-lead window -------------------------------------------------------


def _rejected(outcome: object, reason: str) -> LeadRejected:
    assert isinstance(outcome, LeadRejected), outcome
    assert outcome.reason == reason and outcome.status == "rejected"
    return outcome


async def test_a_repeat_from_the_same_webhook_inside_the_window_is_rejected() -> None:
    repo = FakeRepository()
    hook, other = repo.add_webhook(WS), repo.add_webhook(WS)
    repo.screen(hook, Screening(window_s=30 * DAY))
    t0 = datetime.now(UTC)
    first = received(WS, hook, phone="+15550000100", email="a@x.io", received_at=t0)
    again = received(
        WS, hook, phone="+15550000101", email="a@x.io", received_at=t0 + timedelta(days=29)
    )
    same_batch = received(WS, hook, phone="+15550000100", received_at=t0)
    elsewhere = received(WS, other, phone="+15550000100", received_at=t0)
    out = await handle(repo, [first, same_batch])
    assert isinstance(out[0], LeadProcessed)
    dup = _rejected(out[1], "duplicate_lead")
    assert dup.status_code == 409 and dup.errors[0].field == "phone"
    assert dup.errors[0].message.endswith("within the last 30d")
    out = await handle(repo, [again, elsewhere])
    assert _rejected(out[0], "duplicate_lead").errors[0].field == "email"
    # Contact dedupe across webhooks is unchanged: the other webhook's lead is processed.
    assert isinstance(out[1], LeadProcessed) and out[1].match_type == "phone"
    # Rejected leads are not recorded: one lead from the first webhook, one from the other.
    assert sorted(x.webhook_id == hook for x in repo.tables.leads.values()) == [False, True]
    stored = repo.tables.requests[again.request_id]
    assert (stored.status, stored.error) == (
        "rejected",
        {"type": "duplicate_lead", "message": dup.errors[0].message.replace("phone", "email")},
    )


async def test_outside_the_window_or_without_one_a_repeat_is_a_lead() -> None:
    repo = FakeRepository()
    windowed, plain, by_email = repo.add_webhook(WS), repo.add_webhook(WS), repo.add_webhook(WS)
    repo.screen(windowed, Screening(window_s=DAY))
    repo.screen(by_email, Screening(window_s=DAY, key=("email",)))
    t0 = datetime.now(UTC) - timedelta(days=3)
    later = t0 + timedelta(days=2)
    leads = [
        received(WS, windowed, phone="+15550000200", received_at=t0),
        received(WS, windowed, phone="+15550000200", received_at=later),
        received(WS, plain, phone="+15550000201", received_at=t0),
        received(WS, plain, phone="+15550000201", received_at=t0),
        received(WS, by_email, phone="+15550000202", email="p@x.io", received_at=t0),
        received(WS, by_email, phone="+15550000202", email="q@x.io", received_at=t0),
    ]
    out = await handle(repo, leads)
    assert [type(o).__name__ for o in out] == ["LeadProcessed"] * 6
    # A webhook without a window records no keys (it pays nothing for the feature).
    assert {k[0] for k in repo.tables.lead_keys} == {windowed, by_email}
    # The window runs from the latest accepted lead: a third one a day later repeats it.
    out = await handle(
        repo,
        [received(WS, windowed, phone="+15550000200", received_at=later + timedelta(hours=23))],
    )
    _rejected(out[0], "duplicate_lead")


# --- the suppression list ------------------------------------------------------------


async def test_a_suppressed_lead_is_rejected_or_flagged() -> None:
    repo = FakeRepository()
    rejecting, flagging = uuid.uuid4(), uuid.uuid4()
    hook, flag_hook = repo.add_webhook(rejecting), repo.add_webhook(flagging)
    repo.screen(flag_hook, Screening(suppressed_mode="flag"))
    for ws in (rejecting, flagging):
        repo.suppress(ws, "phone", "+15550000300")
        repo.suppress(ws, "email", "no@x.io")
    out = await handle(
        repo,
        [
            received(rejecting, hook, phone="+15550000300"),
            received(rejecting, hook, phone="+15550000301", email="no@x.io"),
            received(rejecting, hook, phone="+15550000302", email="yes@x.io"),
            received(flagging, flag_hook, phone="+15550000300"),
        ],
    )
    by_phone = _rejected(out[0], "suppressed")
    assert by_phone.status_code == 422 and [e.field for e in by_phone.errors] == ["phone"]
    assert [e.field for e in _rejected(out[1], "suppressed").errors] == ["email"]
    assert isinstance(out[2], LeadProcessed) and out[2].flags == []
    assert isinstance(out[3], LeadProcessed) and out[3].flags == ["suppressed"]
    assert len(repo.tables.leads) == 2


# --- each lead's own step times --------------------------------------------------------


async def test_a_batched_statement_is_split_among_its_leads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_leads = FakeTransaction.write_leads

    async def slow(
        self: FakeTransaction,
        leads: Sequence[LeadRow],
        pairs: Sequence[DuplicatePair] = (),
        keys: Sequence[LeadKeyRow] = (),
    ) -> None:
        await asyncio.sleep(0.2)  # the statement's cost (not a wait for something)
        await write_leads(self, leads, pairs, keys)

    monkeypatch.setattr(FakeTransaction, "write_leads", slow)
    repo = FakeRepository()
    hook = repo.add_webhook(WS)
    out = await handle(repo, [received(WS, hook, phone=f"+1555000040{i}") for i in range(10)])
    steps = [o.processing.steps for o in out if isinstance(o, LeadProcessed)]
    assert len(steps) == 10
    for s in steps:
        # The seed's names, this lead's own, next to the gateway's.
        assert {"contact_processing", "board_assignment", "lead_creation", "field_mapping"} <= set(
            s
        )
        assert not {"dedupe", "contact_write", "lead", "rules"} & set(s)
        # Each lead is given a tenth of the 200 ms statement, never the whole of it.
        assert 15 <= s["lead_creation"] < 100
    assert 195 <= sum(s["lead_creation"] for s in steps) < 400


# --- hostile input -------------------------------------------------------------------


async def test_hostile_leads_on_a_screened_webhook_fail_alone() -> None:
    """A value Postgres refuses (a NUL) and an undecodable message on a webhook with a
    window and a suppression list: each is recorded as failed and dead-lettered, the
    rest of the batch is screened and processed."""
    repo = FakeRepository()
    hook = repo.add_webhook(WS)
    repo.screen(hook, Screening(window_s=DAY))
    repo.suppress(WS, "email", "no@x.io")
    good = received(WS, hook, phone="+15550000500")
    nul = received(WS, hook, phone="+1555\x000000501", email="x" * 5000 + "@x.io")
    suppressed = received(WS, hook, phone="+15550000502", email="no@x.io")
    garbage = Undecodable(error="schema: lead: missing", fields={"request_id": str(uuid.uuid4())})
    got: list[Finished] = []

    async def publish(finished: Sequence[Finished]) -> None:
        got.extend(finished)

    with pytest.raises(PoisonMessage):
        await handle_batch(
            as_messages([good, nul, garbage, suppressed], topic="raw"),
            repo=repo,
            publish=publish,
            settings=ProcessorSettings(),
        )
    statuses = {decode_outcome(f.payload).request_id: f.status for f in got if f.payload}
    assert statuses == {
        good.request_id: "processed",
        nul.request_id: "failed",
        suppressed.request_id: "rejected",
    }
    assert [f.poison is not None for f in got] == [False, True, True, False]
