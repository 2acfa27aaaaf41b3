"""The processor's pipeline (services/processor/handlers.py): a batch's outcomes are
published while the next batch's transactions run, its offsets held back until Kafka
acknowledged them, outcomes kept in batch order, a failed publish retried until it is in.
On the in-memory repository; the same on real Postgres and Kafka: the processor's
integration and fault tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import pytest

from services.processor import handlers
from services.processor.decode import Incoming
from services.processor.fake_repository import FakeRepository
from services.processor.handlers import Hooks, Pipeline
from services.processor.outcomes import Finished
from services.processor.settings import ProcessorSettings
from shared.kafka import KafkaUnavailable, Message
from tests.support.events import as_messages, received
from tests.support.polling import eventually as poll


async def eventually(condition: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return condition()

    await poll(probe, deadline_s=5.0)


pytestmark = pytest.mark.unit


class GatedPublish:
    """A ``publish`` whose acknowledgements the test releases one batch at a time."""

    def __init__(self, failures: int = 0) -> None:
        self.started: list[list[Finished]] = []
        self.acknowledged: list[list[Finished]] = []
        self.gate = asyncio.Event()
        self.failures = failures

    async def __call__(self, finished: Sequence[Finished]) -> None:
        self.started.append(list(finished))
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise KafkaUnavailable("publish not acknowledged: test")
        self.acknowledged.append(list(finished))


def batches(ws: uuid.UUID, hook: uuid.UUID, sizes: Sequence[int]) -> list[list[Message[Incoming]]]:
    events = [received(ws, hook, phone=f"+1555{i:07d}") for i in range(sum(sizes))]
    messages: list[Message[Incoming]] = as_messages(events, topic="raw")
    out, at = [], 0
    for n in sizes:
        out.append(messages[at : at + n])
        at += n
    return out


@pytest.fixture
def setup() -> tuple[FakeRepository, list[list[Message[Incoming]]]]:
    repo = FakeRepository()
    ws = uuid.uuid4()
    return repo, batches(ws, repo.add_webhook(ws), [2, 3])


def pipeline(repo: FakeRepository, publish: GatedPublish, timeout_s: float = 10.0) -> Pipeline:
    settings = ProcessorSettings(processor_tx_attempts=3, kafka_timeout_s=timeout_s)
    return Pipeline(repo=repo, publish=publish, settings=settings, hooks=Hooks())


async def test_the_next_batch_commits_while_the_outcomes_before_are_unacknowledged_and_held(
    setup: tuple[FakeRepository, list[list[Message[Incoming]]]],
) -> None:
    repo, (first, second) = setup
    publish = GatedPublish()
    p = pipeline(repo, publish)
    await p(first)  # returns before Kafka acknowledged the outcomes
    await eventually(lambda: len(publish.started) == 1)
    assert publish.acknowledged == [] and p.held() == {("raw", 0): 0}

    handling = asyncio.create_task(p(second))
    # The second batch's transaction commits while the first's outcomes are in flight,
    # and its own publish waits for them: outcomes stay in batch order.
    await eventually(lambda: len(repo.tables.requests) == 5)
    assert len(publish.started) == 1 and not handling.done()

    publish.gate.set()
    await handling
    await eventually(lambda: len(publish.acknowledged) == 2)
    assert [len(b) for b in publish.acknowledged] == [2, 3]
    assert p.held() == {}


async def test_a_publish_kafka_refuses_is_retried_and_its_offsets_stay_held_until_it_is_in(
    setup: tuple[FakeRepository, list[list[Message[Incoming]]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "RETRY_FIRST_S", 0.01)
    repo, (first, _) = setup
    publish = GatedPublish(failures=2)
    p = pipeline(repo, publish)
    await p(first)
    publish.gate.set()
    await eventually(lambda: len(publish.started) == 3)  # two refusals, then acknowledged
    await eventually(lambda: p.held() == {})
    assert [len(b) for b in publish.acknowledged] == [2]


async def test_the_next_batch_gives_up_waiting_with_a_transient_error_and_a_stop_leaves_it_held(
    setup: tuple[FakeRepository, list[list[Message[Incoming]]]],
) -> None:
    repo, (first, second) = setup
    publish = GatedPublish()
    p = pipeline(repo, publish, timeout_s=0.05)
    await p(first)
    with pytest.raises(KafkaUnavailable, match="not acknowledged"):
        await p(second)  # the runner retries this batch after a backoff
    with pytest.raises(KafkaUnavailable):
        await p.flush()  # stopping: the last outcomes never came in
    assert p.held() == {("raw", 0): 0}  # so their offsets are not committed: read again


async def test_released_partitions_are_no_longer_held(
    setup: tuple[FakeRepository, list[list[Message[Incoming]]]],
) -> None:
    repo, (first, _) = setup
    publish = GatedPublish()
    p = pipeline(repo, publish)
    await p(first)
    p.release({("raw", 0)})
    assert p.held() == {}
    publish.gate.set()
    await p.flush()
    assert [len(b) for b in publish.acknowledged] == [2]
