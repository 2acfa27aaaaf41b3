"""The processor's handler and its transaction steps on the in-memory repository (no
Postgres, no Kafka): dedupe across a batch, redelivery, idempotency conflicts, poison,
lock-conflict retries, the fallback for a value Postgres refuses, and the after-commit hook.
The same paths on real Postgres and Kafka: tests/integration/test_processor_*.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson
import pytest

from services.ingest.responses import outcome_body
from services.processor.commit import TransactionConflict
from services.processor.decode import Incoming, Undecodable
from services.processor.dedupe import ContactState
from services.processor.fake_repository import FakeRepository
from services.processor.handlers import Hooks, handle_batch
from services.processor.outcomes import Finished
from services.processor.rules import BoardRule, parse_conditions
from services.processor.settings import ProcessorSettings
from services.processor.transaction import conflict_request_id
from shared import done
from shared.events import LeadFailed, LeadProcessed, LeadRejected, decode_outcome
from shared.kafka import Message, PoisonMessage
from tests.support.events import as_messages, received

pytestmark = pytest.mark.unit

SETTINGS = ProcessorSettings(processor_tx_attempts=3)


class Published:
    """The handler's ``publish``: what it was handed, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Finished]] = []

    async def __call__(self, finished: Sequence[Finished]) -> None:
        self.batches.append(list(finished))

    def outcomes(self, batch: int = -1) -> list[LeadProcessed | LeadFailed | LeadRejected]:
        return [decode_outcome(f.payload) for f in self.batches[batch] if f.payload is not None]


@pytest.fixture
def repo() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def ws() -> uuid.UUID:
    return uuid.uuid4()


async def handle(
    repo: FakeRepository,
    events: Sequence[Incoming],
    *,
    published: Published | None = None,
    hooks: Hooks | None = None,
    settings: ProcessorSettings = SETTINGS,
) -> Published:
    published = published or Published()
    messages: list[Message[Incoming]] = as_messages(events, topic="raw")
    await handle_batch(
        messages, repo=repo, publish=published, settings=settings, hooks=hooks or Hooks()
    )
    return published


def contacts_of(repo: FakeRepository, ws: uuid.UUID) -> list[ContactState]:
    return [c for c in repo.tables.contacts.values() if c.workspace_id == ws]


async def test_one_person_across_keys_in_one_batch_is_one_contact(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    first = received(ws, hook, phone="+15550000001", first_name="Ann")
    by_email = received(ws, hook, phone="+15550000001", email="ann@x.io", first_name=None)
    other = received(ws, hook, phone="+15550000002", first_name="Bob")
    published = await handle(repo, [first, by_email, other])

    outcomes = published.outcomes()
    assert [o.status for o in outcomes] == ["processed"] * 3
    assert all(isinstance(o, LeadProcessed) for o in outcomes)
    a, b, c = outcomes
    assert isinstance(a, LeadProcessed) and isinstance(b, LeadProcessed)
    assert isinstance(c, LeadProcessed)
    assert (a.match_type, b.match_type, c.match_type) == ("new", "phone", "new")
    assert a.contact.id == b.contact.id != c.contact.id
    ann = repo.tables.contacts[a.contact.id]
    # The second lead added the email and did not blank the first name.
    assert (ann.phone, ann.email, ann.first_name) == ("+15550000001", "ann@x.io", "Ann")
    assert len(contacts_of(repo, ws)) == 2 and len(repo.tables.leads) == 3
    assert repo.commits == 1


async def test_redelivery_creates_nothing_and_republishes_the_stored_outcome(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    events = [received(ws, hook, phone=f"+1555000001{i}") for i in range(3)]
    first = await handle(repo, events)
    again = await handle(repo, events + events)  # redelivered, twice within the batch

    assert len(repo.tables.leads) == 3 and len(contacts_of(repo, ws)) == 3
    assert all(not f.fresh for f in again.batches[0])
    stored = {f.event_id: f.payload for f in first.batches[0]}
    assert {f.event_id: f.payload for f in again.batches[0]} == stored


async def test_a_reused_idempotency_key_with_another_body_is_rejected_once(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    original = received(ws, hook, idempotency_key="k-1", phone="+15550000020")
    changed = received(ws, hook, idempotency_key="k-1", phone="+15550000021")
    assert changed.request_id == original.request_id
    await handle(repo, [original])
    published = await handle(repo, [changed, changed])

    rejected = published.outcomes()
    assert [type(o) for o in rejected] == [LeadRejected, LeadRejected]
    assert {o.request_id for o in rejected} == {conflict_request_id(changed)}
    assert [f.fresh for f in published.batches[0]] == [True, False]
    assert len(repo.tables.leads) == 1
    assert repo.tables.requests[conflict_request_id(changed)].status == "rejected"


async def test_poison_is_recorded_and_dead_lettered_and_the_rest_goes_through(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    good = received(ws, hook, phone="+15550000030")
    unknown = received(ws, uuid.uuid4(), phone="+15550000031")
    nameless = Undecodable(error="schema: lead: missing", fields={})
    published = Published()
    with pytest.raises(PoisonMessage) as raised:
        await handle(repo, [good, nameless, unknown], published=published)

    assert raised.value.message.value is nameless
    assert raised.value.reason.startswith("undecodable: SchemaError")
    statuses = {o.request_id: o.status for o in published.outcomes()}
    assert statuses == {good.request_id: "processed", unknown.request_id: "failed"}
    failed = repo.tables.requests[unknown.request_id]
    assert failed.error == {"type": "UnknownWebhook", "message": "webhook not found"}


async def test_lock_conflicts_retry_the_transaction_and_are_never_surfaced(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    repo.fail("write_leads", asyncpg.UniqueViolationError("leads_request_id"), times=2)
    events = [received(ws, hook, phone="+15550000040"), received(ws, hook, email="b@x.io")]
    published = await handle(repo, events)

    assert [o.status for o in published.outcomes()] == ["processed", "processed"]
    assert len(repo.tables.leads) == 2 and len(contacts_of(repo, ws)) == 2
    assert repo.commits == 1


async def test_conflicts_that_keep_coming_leave_nothing_and_go_back_to_the_runner(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    repo.fail("lock_identities", asyncpg.DeadlockDetectedError("deadlock"), times=3)
    published = Published()
    with pytest.raises(TransactionConflict):
        await handle(repo, [received(ws, hook, phone="+15550000050")], published=published)
    assert published.batches == [] and repo.tables.leads == {} and repo.commits == 0


async def test_a_value_postgres_refuses_fails_alone(repo: FakeRepository, ws: uuid.UUID) -> None:
    hook = repo.add_webhook(ws)
    good = [received(ws, hook, phone=f"+1555000006{i}") for i in range(3)]
    bad = received(ws, hook, phone="+15550000069", first_name="An\x00n")
    published = Published()
    with pytest.raises(PoisonMessage) as raised:
        await handle(repo, [good[0], bad, *good[1:]], published=published)

    assert raised.value.reason == "permanent: CharacterNotInRepertoireError: SQLSTATE 22021"
    statuses = {o.request_id: o.status for o in published.outcomes()}
    assert statuses == {**{e.request_id: "processed" for e in good}, bad.request_id: "failed"}
    assert len(repo.tables.leads) == 3
    # The failure is stored without the NUL (jsonb cannot hold one).
    assert "\\u0000" not in repo.tables.requests[bad.request_id].result


async def test_a_redelivered_poison_message_is_dead_lettered_with_the_same_reason(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    # The runner re-runs a batch without the poison it was handed, so a second poison
    # message of that batch comes back as a stored failure: its reason must read the same.
    hook = repo.add_webhook(ws)
    bad = received(ws, hook, phone="+15550000068", first_name="An\x00n")
    reasons = []
    for _ in range(2):
        with pytest.raises(PoisonMessage) as raised:
            await handle(repo, [bad])
        reasons.append(raised.value.reason)
    assert reasons == ["permanent: CharacterNotInRepertoireError: SQLSTATE 22021"] * 2


async def test_a_failure_postgres_refuses_too_is_only_dead_lettered(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    bad = received(ws, hook, idempotency_key="k\x00", phone="+15550000070")
    published = Published()
    with pytest.raises(PoisonMessage) as raised:
        await handle(repo, [bad], published=published)
    assert raised.value.reason.startswith("permanent: CharacterNotInRepertoireError")
    assert published.outcomes() == [] and repo.tables.requests == {}


async def test_after_commit_runs_before_publishing_and_only_when_something_is_new(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    hook = repo.add_webhook(ws)
    events = [received(ws, hook, phone="+15550000080")]
    calls: list[int] = []

    def crash(finished: list[Finished]) -> None:
        calls.append(len(finished))
        raise RuntimeError("fault: after commit, before publish")

    published = Published()
    with pytest.raises(RuntimeError):
        await handle(repo, events, published=published, hooks=Hooks(after_commit=crash))
    assert published.batches == [] and len(repo.tables.leads) == 1

    # The redelivery republishes the stored outcome; nothing new, so no hook.
    await handle(repo, events, published=published, hooks=Hooks(after_commit=crash))
    assert calls == [1]
    assert [f.fresh for f in published.batches[0]] == [False]


async def test_board_rules_route_the_contact(repo: FakeRepository, ws: uuid.UUID) -> None:
    hook = repo.add_webhook(ws)
    conditions, valid = parse_conditions([{"field": "product", "op": "eq", "value": "bath"}])
    board = uuid.uuid4()
    repo.add_rule(ws, BoardRule(uuid.uuid4(), board, "Baths", None, conditions, valid))
    bath = received(ws, hook, phone="+15550000090", product="Bath")
    kitchen = received(ws, hook, phone="+15550000091", product="Kitchen")
    a, b = (await handle(repo, [bath, kitchen])).outcomes()
    assert isinstance(a, LeadProcessed) and isinstance(b, LeadProcessed)
    assert (a.rule_applied, a.contact.board_id, a.contact.board_name) == (True, board, "Baths")
    assert (b.rule_applied, b.contact.board_id) == (False, None)


async def test_admin_reads_on_the_fake(repo: FakeRepository, ws: uuid.UUID) -> None:
    hook = repo.add_webhook(ws)
    ann = received(ws, hook, phone="+15550000100", email="ann@x.io")
    bob = received(ws, hook, phone="+15550000101", email="bob@x.io")
    # Bob's phone with Ann's email: Bob's contact; Ann keeps her email (a possible duplicate).
    both = received(ws, hook, phone="+15550000101", email="ann@x.io")
    outcomes = (await handle(repo, [ann, bob, both])).outcomes()
    last = outcomes[-1]
    assert isinstance(last, LeadProcessed) and isinstance(outcomes[0], LeadProcessed)
    pairs = await repo.possible_duplicates(ws, limit=10)
    assert [(p["a_id"], p["b_id"], p["key_type"]) for p in pairs] == [
        (last.contact.id, outcomes[0].contact.id, "email")
    ]
    detail = await repo.contact_detail(last.contact.id)
    assert detail is not None and len(detail.leads) == 2
    assert [d["other"] for d in detail.possible_duplicates] == [outcomes[0].contact.id]
    assert await repo.contact_detail(uuid.uuid4()) is None


async def test_an_awaited_request_is_stored_with_its_answer_for_the_gateway(
    repo: FakeRepository, ws: uuid.UUID
) -> None:
    """The gateway's notification (shared/done.py) carries what its synchronous answer shows
    of the stored row: the answer built from it is the answer built from the row."""
    hook = repo.add_webhook(ws)
    original = received(ws, hook, idempotency_key="k-9", phone="+15550000090")
    await handle(repo, [original])
    waited = [
        received(ws, hook, phone="+15550000091", email="a@x.io").model_copy(
            update={"awaited": True}
        ),
        received(ws, hook, idempotency_key="k-9", phone="+15550000092").model_copy(
            update={"awaited": True}
        ),
    ]
    plain = received(ws, hook, phone="+15550000093")
    await handle(repo, [*waited, plain])

    rows = repo.tables.requests
    assert rows[plain.request_id].done_notice is None
    answered = set()
    # The keyed lead with another body is rejected under a request id of its own.
    for stored_as in (waited[0].request_id, conflict_request_id(waited[1])):
        row = rows[stored_as]
        assert row.done_notice is not None
        request_id, notified = done.decode(row.done_notice)
        assert request_id == stored_as and notified is not None
        stored = {"status": row.status, "result": orjson.loads(row.result), "error": row.error}
        assert "first_name" not in row.done_notice and "+1555" not in row.done_notice
        for duplicate in (False, True):
            assert outcome_body(
                notified, webhook_id=hook, request_id=request_id, duplicate=duplicate
            ) == outcome_body(stored, webhook_id=hook, request_id=request_id, duplicate=duplicate)
        answered.add(row.status)
    assert answered == {"processed", "rejected"}
