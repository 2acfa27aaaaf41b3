"""The gateway's POST path and GET handlers, step by step, without Kafka or Postgres: the
handlers run on mocked requests with the in-memory repository (``FakeRepository``) and a
publisher that records what it is given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from services.ingest import handlers, steps
from services.ingest.bodies import Accepted, Duplicate, Error, Rejected, RequestStatus
from services.ingest.config import ConfigCache
from services.ingest.deps import Deps
from services.ingest.enqueue import KafkaLink
from services.ingest.listener import Waiters
from services.ingest.openapi import SPEC
from services.ingest.repository import FakeRepository
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import LeadRejected, decode_outcome, decode_raw
from shared.kafka import KafkaUnavailable
from tests.support.ingest import webhook_row

pytestmark = pytest.mark.unit

LEAD = {"firstname": "Ann", "lastname": "Lee", "phone_number": "(626) 663-3444"}


class RecordingPublisher:
    """Stands in for shared.kafka.Publisher: keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.fail: Exception | None = None

    async def publish(self, topic: str, value: bytes, *, key: str, timeout: float) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, value, key))

    def on(self, topic: str) -> list[bytes]:
        return [value for t, value, _ in self.sent if t == topic]


class Gateway:
    """Deps on fakes, and the handlers called with mocked requests."""

    def __init__(self, **settings: Any) -> None:
        self.repo = FakeRepository()
        self.publisher = RecordingPublisher()
        cfg = IngestSettings(public_url="http://gw", ip_rate_per_minute=0, **settings)
        link = KafkaLink(cfg)
        link.publisher = self.publisher  # type: ignore[assignment]
        link.up = True
        self.deps = Deps(settings=cfg, cache=ConfigCache(None), kafka=link, waiters=Waiters())
        self.deps.connected(self.repo)

    def webhook(self, **columns: Any) -> uuid.UUID:
        row = webhook_row(**columns)
        self.repo.webhooks[row["id"]] = row
        return row["id"]

    async def post(
        self,
        hook_id: uuid.UUID | str,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        request = make_mocked_request(
            "POST",
            f"/webhooks/{hook_id}",
            headers=CIMultiDict(
                {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
            ),
            match_info={"webhook_id": str(hook_id)},
            payload=_Body(body),
        )
        response = await handlers.receive(request, deps=self.deps)
        return response.status, _bytes(response)

    async def status(self, hook_id: uuid.UUID, request_id: uuid.UUID | str) -> tuple[int, bytes]:
        request = make_mocked_request(
            "GET",
            f"/webhooks/{hook_id}/requests/{request_id}",
            match_info={"webhook_id": str(hook_id), "request_id": str(request_id)},
        )
        response = await handlers.request_status(request, deps=self.deps)
        return response.status, _bytes(response)


class _Body:
    """A request body that arrives in one chunk."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def is_eof(self) -> bool:
        return False  # (the gateway then reads it chunk by chunk, as a slow sender's)

    async def readany(self) -> bytes:
        data, self._data = self._data, b""
        return data


def _bytes(response: web.StreamResponse) -> bytes:
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    return response.body


async def test_an_accepted_lead_is_enqueued_with_its_step_timings() -> None:
    gw = Gateway()
    hook = gw.webhook()
    status, body = await gw.post(hook, orjson.dumps(LEAD))
    assert status == 202, body
    accepted = Accepted.model_validate_json(body)
    assert list(orjson.loads(body)) == list(Accepted.model_fields)  # field order on the wire
    assert accepted.status_url == f"http://gw/webhooks/{hook}/requests/{accepted.request_id}"
    [raw] = [decode_raw(m) for m in gw.publisher.on(topics.RAW)]
    assert raw.request_id == accepted.request_id and raw.lead.phone == "+16266633444"
    assert set(raw.steps) == set(GATEWAY_STEPS)
    # The status endpoint knows it from this process's memory until the processor stores it.
    status, body = await gw.status(hook, accepted.request_id)
    assert status == 200 and RequestStatus.model_validate_json(body).status == "accepted"


async def test_an_invalid_lead_is_answered_400_and_recorded_in_both_places() -> None:
    gw = Gateway()
    hook = gw.webhook()
    status, body = await gw.post(hook, orjson.dumps({"firstname": "no phone, no email"}))
    assert status == 400
    rejected = Rejected.model_validate_json(body)
    assert rejected.errors and not gw.publisher.on(topics.RAW)
    await gw.deps.background.drain(5)
    [event] = [decode_outcome(m) for m in gw.publisher.on(topics.OUTCOMES)]
    assert isinstance(event, LeadRejected) and event.request_id == rejected.request_id
    assert set(event.processing.steps) == set(GATEWAY_STEPS)
    assert gw.repo.rows[rejected.request_id]["status"] == "rejected"
    status, body = await gw.status(hook, rejected.request_id)
    summary = RequestStatus.model_validate_json(body).result
    assert status == 200 and summary is not None and summary.model_dump()["status_code"] == 400


async def test_a_body_that_is_not_a_json_object_is_refused_before_mapping() -> None:
    gw = Gateway()
    hook = gw.webhook()
    status, body = await gw.post(hook, b"[1, 2]")
    assert status == 400 and Rejected.model_validate_json(body).errors[0].code == "invalid_type"
    await gw.deps.background.drain(5)
    [event] = [decode_outcome(m) for m in gw.publisher.on(topics.OUTCOMES)]
    # Rejected while parsing: only the steps done carry a time.
    assert set(event.processing.steps) == {"receive", "authentication"}


GATEWAY_STEPS = {
    "receive": "read_body",
    "authentication": "authenticate",
    "parse": "parse",
    "duplicate_check": "idempotency",
    "field_mapping": "map_fields",
    "validation": "validate_mapped",
}


@pytest.mark.parametrize("outcome", ["accepted", "rejected"])
async def test_each_step_times_what_it_names(outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each gateway step takes its own (distinct) time on a fake clock; each name in the
    event carries exactly the time of the function it names."""
    now = [1000.0]
    fake_time = SimpleNamespace(perf_counter=lambda: now[0])
    monkeypatch.setattr(handlers, "time", fake_time)
    monkeypatch.setattr(steps, "time", fake_time)
    costs = dict(
        zip(GATEWAY_STEPS.values(), (0.001, 0.002, 0.004, 0.008, 0.016, 0.032), strict=True)
    )

    def timed(name: str) -> Any:
        original = getattr(steps, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            now[0] += costs[name]
            return original(*args, **kwargs)

        return run

    for name in costs:
        monkeypatch.setattr(steps, name, timed(name))
    gw = Gateway()
    hook = gw.webhook()
    lead = LEAD if outcome == "accepted" else {"firstname": "no phone, no email"}
    status, _ = await gw.post(hook, orjson.dumps(lead))
    if outcome == "accepted":
        assert status == 202
        [raw] = [decode_raw(m) for m in gw.publisher.on(topics.RAW)]
        timed_steps = raw.steps
    else:
        assert status == 400
        await gw.deps.background.drain(5)
        [event] = [decode_outcome(m) for m in gw.publisher.on(topics.OUTCOMES)]
        timed_steps = event.processing.steps
    assert timed_steps == pytest.approx({s: costs[fn] * 1000 for s, fn in GATEWAY_STEPS.items()})


async def test_a_keyed_retry_is_a_duplicate_and_another_body_a_conflict() -> None:
    gw = Gateway()
    hook = gw.webhook()
    key = {"webhook-id": "msg_1"}
    status, first = await gw.post(hook, orjson.dumps(LEAD), headers=key)
    assert status == 202
    request_id = Accepted.model_validate_json(first).request_id

    status, again = await gw.post(hook, orjson.dumps(LEAD), headers=key)
    duplicate = Duplicate.model_validate_json(again)
    assert status == 202 and duplicate.request_id == request_id
    assert duplicate.original_status == "accepted"
    assert len(gw.publisher.on(topics.RAW)) == 1, "a retry is not enqueued again"

    status, other = await gw.post(hook, orjson.dumps({**LEAD, "firstname": "Bo"}), headers=key)
    assert status == 409
    assert Rejected.model_validate_json(other).errors[0].code == "idempotency_conflict"

    # A process that never saw it finds it in webhook_requests once it is processed.
    fresh = Gateway()
    fresh.repo.webhooks = gw.repo.webhooks
    fresh.repo.rows[request_id] = {
        "request_id": request_id,
        "webhook_id": hook,
        "status": "processed",
        "body_sha256": None,
        "result": None,
    }
    status, stored = await fresh.post(hook, orjson.dumps(LEAD), headers=key)
    assert status == 200
    assert Duplicate.model_validate_json(stored).original_status == "processed"


@pytest.mark.parametrize(
    ("case", "expected_status", "expected_code"),
    [
        ("unknown webhook", 404, "not_found"),
        ("malformed id", 404, "not_found"),
        ("disabled webhook", 410, "disabled"),
        ("disabled workspace", 410, "disabled"),
        ("unusable mapping", 503, "webhook_misconfigured"),
        ("xml", 415, "unsupported_media_type"),
        ("body over the webhook's limit", 413, "too_large"),
        ("wrong api key", 401, "invalid_credentials"),
        ("config store away", 503, "unavailable"),
    ],
)
async def test_refusals_that_are_not_about_a_lead(
    case: str, expected_status: int, expected_code: str
) -> None:
    gw = Gateway()
    target: uuid.UUID | str = gw.webhook()
    content_type, headers = "application/json", {}
    if case == "unknown webhook":
        target = uuid.uuid4()
    elif case == "malformed id":
        target = "not-a-uuid"
    elif case == "disabled webhook":
        target = gw.webhook(status="disabled")
    elif case == "disabled workspace":
        target = gw.webhook(workspace_status="disabled")
    elif case == "unusable mapping":
        target = gw.webhook(template="none", mapping=[{"target": "nope"}])
    elif case == "xml":
        content_type = "application/xml"
    elif case == "body over the webhook's limit":
        target = gw.webhook(max_body_bytes=10)
    elif case == "wrong api key":
        target = gw.webhook(auth_mode="api-key", secret="$not-a-hash")
        headers = {"X-API-Key": "guess"}
    elif case == "config store away":
        gw.repo.down = True
    status, body = await gw.post(
        target, orjson.dumps(LEAD), content_type=content_type, headers=headers
    )
    assert status == expected_status, body
    error = Error.model_validate_json(body)
    assert error.errors[0].code == expected_code
    assert not gw.publisher.sent, "refusals that are not about a lead are not recorded"


async def test_the_webhooks_rate_limit_applies_after_authenticating() -> None:
    gw = Gateway()
    hook = gw.webhook(rate_limit_per_minute=1)
    assert (await gw.post(hook, orjson.dumps(LEAD)))[0] == 202
    status, body = await gw.post(hook, orjson.dumps(LEAD))
    assert status == 429 and Error.model_validate_json(body).errors[0].code == "rate_limited"


async def test_an_unkeyed_retry_of_an_indeterminate_503_reuses_its_request_id() -> None:
    gw = Gateway()
    hook = gw.webhook()
    gw.publisher.fail = KafkaUnavailable("not acknowledged in time")
    status, body = await gw.post(hook, orjson.dumps(LEAD))
    assert status == 503 and "never makes a second lead" in body.decode()
    await gw.deps.background.drain(5)
    [(remembered, _)] = gw.repo.indeterminate.values()  # shared with the other workers

    gw.publisher.fail = None
    gw.deps.kafka.up = True  # the probe would notice Kafka is back
    status, body = await gw.post(hook, orjson.dumps(LEAD))
    assert status == 202 and Accepted.model_validate_json(body).request_id == remembered
    status, body = await gw.post(hook, orjson.dumps({**LEAD, "firstname": "Bo"}))
    assert Accepted.model_validate_json(body).request_id != remembered


async def test_status_of_a_stored_request_is_a_summary_without_personal_data() -> None:
    gw = Gateway()
    hook = gw.webhook()
    request_id = uuid.uuid4()
    gw.repo.rows[request_id] = {
        "request_id": request_id,
        "webhook_id": hook,
        "status": "processed",
        "received_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "processed_at": None,
        "result": {
            "status": "processed",
            "contact": {"id": "c1", "phone": "+16266633444"},
            "match_type": "phone",
            "is_new_contact": False,
            "processing": {"duration_ms": 7.6},
        },
    }
    status, body = await gw.status(hook, request_id)
    assert status == 200 and b"6266633444" not in body
    assert orjson.loads(body)["received_at"] == "2026-01-02T03:04:05+00:00"
    assert orjson.loads(body)["result"]["message"] == "Contact updated via phone match"
    status, body = await gw.status(uuid.uuid4(), request_id)  # another webhook's request
    assert status == 404 and orjson.loads(body)["status"] == "unknown"


def test_every_schema_the_openapi_document_refers_to_is_in_it() -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SPEC)
    names = {ref.removeprefix("#/components/schemas/") for ref in refs}
    assert {"Accepted", "Duplicate", "Processed", "Failed", "Rejected", "Error"} <= names
    assert names <= set(SPEC["components"]["schemas"])


async def test_waiters_woken_together_read_their_outcomes_in_one_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from services.ingest.waiting import wait_for_outcome

    gw = Gateway()
    hook = gw.webhook()
    reads: list[int] = []
    many = gw.repo.requests

    async def requests(request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        reads.append(len(request_ids))
        return await many(request_ids)

    async def one_by_one(request_id: uuid.UUID) -> dict[str, Any] | None:
        raise AssertionError("a woken waiter read its row alone")

    monkeypatch.setattr(gw.repo, "requests", requests)
    monkeypatch.setattr(gw.repo, "request", one_by_one)
    ids = [uuid.uuid4() for _ in range(5)]
    waiting = []
    for request_id in ids:
        accepted = Accepted(
            success=True, request_id=request_id, webhook_id=hook, status="accepted", status_url=""
        )
        waiter = gw.deps.waiters.register(request_id)
        waiting.append(
            asyncio.create_task(
                wait_for_outcome(gw.deps, hook, request_id, waiter, 5.0, accepted, duplicate=False)
            )
        )
    await asyncio.sleep(0)  # every request is waiting for its notification
    for request_id in ids:  # the processor committed a batch of five: five notifications
        gw.repo.rows[request_id] = {
            "request_id": request_id,
            "webhook_id": hook,
            "status": "processed",
            "result": {"status": "processed", "contact": {"id": "c1"}, "match_type": "phone"},
        }
        gw.deps.waiters.notify(request_id)
    answers = await asyncio.gather(*waiting)
    assert [a.status for a in answers] == [200] * 5
    assert reads == [5]


async def test_a_waiter_woken_with_the_stored_answer_reads_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processor's notification carries the answer (shared/done.py): the waiter answers
    from it without a query; a notification with the id alone still has it read the row."""
    import asyncio

    from services.ingest.listener import Listener
    from services.ingest.waiting import wait_for_outcome
    from shared import done

    gw = Gateway()
    hook = gw.webhook()
    reads: list[list[uuid.UUID]] = []

    async def requests(request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        reads.append(request_ids)
        return {r: gw.repo.rows[r] for r in request_ids if r in gw.repo.rows}

    monkeypatch.setattr(gw.repo, "requests", requests)
    listener = Listener("", on_config=lambda _: None, waiters=gw.deps.waiters, on_reconnect=dict)
    result = {"status": "processed", "contact": {"id": "c1"}, "match_type": "phone"}

    async def answer(payload: str, request_id: uuid.UUID) -> tuple[int, dict[str, Any]]:
        accepted = Accepted(
            success=True, request_id=request_id, webhook_id=hook, status="accepted", status_url=""
        )
        waiter = gw.deps.waiters.register(request_id)
        task = asyncio.create_task(
            wait_for_outcome(gw.deps, hook, request_id, waiter, 5.0, accepted, duplicate=False)
        )
        await asyncio.sleep(0)  # waiting for its notification
        listener._done(None, 0, done.CHANNEL, payload)
        response = await task
        gw.deps.waiters.release(request_id, waiter)
        return response.status, orjson.loads(response.body)

    carried = uuid.uuid4()
    payload = done.encode(carried, "processed", orjson.dumps(result).decode(), None)
    status, body = await answer(payload, carried)
    assert (status, body["contact_id"], body["match_type"]) == (200, "c1", "phone")
    assert reads == []

    bare = uuid.uuid4()
    gw.repo.rows[bare] = {
        "request_id": bare,
        "webhook_id": hook,
        "status": "processed",
        "result": result,
    }
    status, body = await answer(str(bare), bare)
    assert (status, body["contact_id"]) == (200, "c1")
    assert reads == [[bare]]
