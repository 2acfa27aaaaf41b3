"""The shared producer and consumer runner against a real Kafka broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import pytest
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from shared import topics
from shared.kafka import (
    ConsumerRunner,
    KafkaUnavailable,
    Message,
    PoisonMessage,
    Publisher,
    ensure_topics,
)
from shared.settings import CommonSettings
from tests.support.polling import eventually
from tests.support.topics import (
    TopicUnreadable,
    group_caught_up,
    read_json,
    read_topic,
    wait_caught_up,
)

pytestmark = pytest.mark.integration


def _decode(raw: bytes) -> dict:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def raw_runner(
    settings: CommonSettings,
    pub: Publisher,
    group: str,
    handler: Callable[[list[Message[dict]]], Awaitable[None]],
    **options: Any,
) -> ConsumerRunner[dict]:
    """A runner of the raw topic decoding JSON objects, dead-lettering through ``pub``."""
    return ConsumerRunner(
        settings,
        topics=[topics.RAW],
        group_id=group,
        decode=_decode,
        handler=handler,
        publisher=pub,
        **options,
    )


@contextlib.asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def test_round_trip_through_publisher_and_runner(settings: CommonSettings) -> None:
    await ensure_topics(settings)
    seen: list[dict] = []

    async def handle(messages: list[Message[dict]]) -> None:
        seen.extend(m.value for m in messages)

    async with Publisher(settings) as pub:
        for i in range(20):
            await pub.publish(topics.RAW, orjson.dumps({"n": i}), key=f"ws{i % 3}")
        runner = raw_runner(settings, pub, "g-roundtrip", handle)
        async with running(runner):
            await eventually(lambda: _ret(len(seen)), until=lambda n: n >= 20, what="20 consumed")
    assert sorted(v["n"] for v in seen) == list(range(20))


async def _ret(value):
    return value


async def test_runner_binds_topic_partition_and_offset_to_the_handling(
    settings: CommonSettings,
) -> None:
    await ensure_topics(settings)
    contexts: list[dict] = []

    async def handle(messages: list[Message[dict]]) -> None:
        contexts.append({**structlog.contextvars.get_contextvars(), "got": len(messages)})

    async with Publisher(settings) as pub:
        meta = await pub.publish(topics.RAW, orjson.dumps({"n": 1}), key="one-key")
        runner = raw_runner(settings, pub, "g-context", handle)
        async with running(runner):
            await eventually(lambda: _ret(len(contexts)), what="handled")
    assert contexts[0] == {
        "topic": topics.RAW,
        "partition": meta.partition,
        "offset": meta.offset,
        "got": 1,
    }
    assert structlog.contextvars.get_contextvars() == {}


async def test_poison_message_is_dead_lettered_with_reason_and_consumer_goes_on(
    settings: CommonSettings,
) -> None:
    await ensure_topics(settings)
    handled: list[int] = []

    async def handle(messages: list[Message[dict]]) -> None:
        for m in messages:
            if m.value.get("bad"):
                raise PoisonMessage(m, "unwritable: bad lead")
        handled.extend(m.value["n"] for m in messages)

    async with Publisher(settings) as pub:
        await pub.publish(topics.RAW, orjson.dumps({"n": 1}), key="k")
        await pub.publish(topics.RAW, b"\xff not json", key="k")
        await pub.publish(topics.RAW, orjson.dumps({"n": 2, "bad": True}), key="k")
        await pub.publish(topics.RAW, orjson.dumps({"n": 3}), key="k")
        runner = raw_runner(settings, pub, "g-poison", handle)
        async with running(runner):
            await eventually(
                lambda: _ret(sorted(set(handled))),
                until=lambda v: v == [1, 3],
                what="good messages handled",
            )
    entries = await read_json(settings, topics.DEADLETTER, min_count=2)
    reasons = sorted(e["reason"].split(":")[0] for e in entries)
    assert reasons == ["undecodable", "unwritable"]
    for e in entries:
        assert e["source_topic"] == topics.RAW and e["group_id"] == "g-poison"
        assert base64.b64decode(e["payload_b64"])  # the original bytes are kept
    # nothing poison is retried forever: the group's committed offset is past all four
    assert sorted(set(handled)) == [1, 3]


async def test_consumer_that_dies_before_commit_gets_the_message_again(
    settings: CommonSettings,
) -> None:
    await ensure_topics(settings)
    first: list[int] = []

    class Crash(BaseException):
        """Not an Exception: the runner does not retry it, like a process dying."""

    async def crash(messages: list[Message[dict]]) -> None:
        first.extend(m.value["n"] for m in messages)
        raise Crash

    async with Publisher(settings) as pub:
        await pub.publish(topics.RAW, orjson.dumps({"n": 7}), key="k")
        runner = raw_runner(settings, pub, "g-redeliver", crash)
        with pytest.raises(Crash):
            await asyncio.wait_for(runner.run(), 30)
        assert first == [7]

        second: list[int] = []

        async def handle(messages: list[Message[dict]]) -> None:
            second.extend(m.value["n"] for m in messages)

        runner2 = raw_runner(settings, pub, "g-redeliver", handle)
        async with running(runner2):
            await eventually(lambda: _ret(second), until=lambda v: v == [7], what="redelivery")


async def test_transient_failure_is_retried_without_commit(settings: CommonSettings) -> None:
    await ensure_topics(settings)
    attempts: list[int] = []
    done: list[int] = []

    async def flaky(messages: list[Message[dict]]) -> None:
        attempts.append(len(messages))
        if len(attempts) < 3:
            raise ConnectionError("database away")
        done.extend(m.value["n"] for m in messages)

    async with Publisher(settings) as pub:
        await pub.publish(topics.RAW, orjson.dumps({"n": 9}), key="k")
        runner = raw_runner(settings, pub, "g-flaky", flaky)
        async with running(runner):
            await eventually(lambda: _ret(done), until=lambda v: v == [9], what="retried")
    assert len(attempts) == 3


async def _publish_numbers(pub: Publisher, numbers: list[int], *, bad: int) -> None:
    """JSON messages on one partition (one key), ``bad`` marked as the poison one."""
    for n in numbers:
        await pub.publish(topics.RAW, orjson.dumps({"n": n, "bad": n == bad}), key="one")


async def test_a_message_that_cannot_be_stored_is_isolated_and_its_neighbours_go_on(
    settings: CommonSettings,
) -> None:
    """H3: a data error Postgres would raise for one message in a batch of 20: the batch
    is split until that message is alone; it is dead-lettered with its reason, the other
    19 are handled, the offsets move past all 20."""
    await ensure_topics(settings)
    handled: set[int] = set()
    calls: list[int] = []

    async def store(messages: list[Message[dict]]) -> None:
        calls.append(len(messages))
        if any(m.value["bad"] for m in messages):
            raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
        handled.update(m.value["n"] for m in messages)

    async with Publisher(settings) as pub:
        await _publish_numbers(pub, list(range(20)), bad=13)
        runner = raw_runner(settings, pub, "g-permanent", store, max_batch=20)
        async with running(runner):
            await eventually(
                lambda: _ret(len(handled)), until=lambda n: n == 19, what="neighbours handled"
            )
            await eventually(
                lambda: _ret(runner.readiness()[0]), what="ready (nothing stuck)", deadline_s=10
            )
    entries = await read_json(settings, topics.DEADLETTER, min_count=1)
    assert [e["reason_code"] for e in entries] == ["permanent"]
    assert entries[0]["error_class"] == "CharacterNotInRepertoireError"
    assert orjson.loads(base64.b64decode(entries[0]["payload_b64"]))["n"] == 13
    assert 13 not in handled
    assert len(calls) < 20, f"split in halves, not one by one: {calls}"


async def test_a_handler_bug_on_one_message_is_dead_lettered_after_a_bound(
    settings: CommonSettings,
) -> None:
    """H3: an unclassified error (a bug) that fails the same message every time is retried
    a bounded number of times, then isolated and dead-lettered; never retried for ever."""
    await ensure_topics(settings)
    handled: set[int] = set()

    async def buggy(messages: list[Message[dict]]) -> None:
        for m in messages:
            if m.value["bad"]:
                raise KeyError("field the handler assumed")
        handled.update(m.value["n"] for m in messages)

    async with Publisher(settings) as pub:
        await _publish_numbers(pub, [1, 2, 3, 4], bad=3)
        runner = raw_runner(settings, pub, "g-bug", buggy, unknown_attempts=2)
        async with running(runner):
            await eventually(lambda: _ret(sorted(handled)), until=lambda v: v == [1, 2, 4])
    entries = await read_json(settings, topics.DEADLETTER, min_count=1)
    assert [(e["reason_code"], e["error_class"]) for e in entries] == [
        ("retries_exhausted", "KeyError")
    ]


async def test_a_stuck_partition_turns_readiness_and_lag_and_recovers(
    settings: CommonSettings,
) -> None:
    """H4: a transient failure is retried (never dead-lettered); past the bound readiness
    names topic, partition, offset and error; lag counts from the committed offset;
    when the failure stops, the partition moves and readiness returns."""
    await ensure_topics(settings)
    away = True
    done: list[int] = []

    async def needs_database(messages: list[Message[dict]]) -> None:
        if away:
            raise ConnectionRefusedError("database away")
        done.extend(m.value["n"] for m in messages)

    async with Publisher(settings) as pub:
        meta = await pub.publish(topics.RAW, orjson.dumps({"n": 5}), key="k")
        runner = raw_runner(settings, pub, "g-stuck", needs_database, stuck_after_s=0.5)
        async with running(runner):
            _, details = await eventually(
                lambda: _ret(runner.readiness()),
                until=lambda r: not r[0] and "stuck" in r[1],
                what="readiness 503 naming the stuck offset",
            )
            stuck = details["stuck"][0]
            assert (stuck["topic"], stuck["partition"], stuck["offset"]) == (
                topics.RAW,
                meta.partition,
                meta.offset,
            )
            assert stuck["error"] == "ConnectionRefusedError"
            assert _gauge("leadwire_consumer_lag", topics.RAW, meta.partition) >= 1
            assert _gauge("leadwire_consumer_stuck_seconds", topics.RAW, meta.partition) > 0
            away = False
            await eventually(lambda: _ret(done), until=lambda v: v == [5], what="recovered")
            await eventually(lambda: _ret(runner.readiness()[0]), what="ready again")
    assert await read_topic(settings, topics.DEADLETTER) == []


def _gauge(name: str, topic: str, partition: int) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, {"topic": topic, "partition": str(partition)})
    return value if value is not None else -1.0


async def test_an_event_of_an_unknown_version_is_dead_lettered_as_such(
    settings: CommonSettings,
) -> None:
    """H2: a well-formed event of a schema version this build does not read."""
    from shared.events import decode_outcome

    await ensure_topics(settings)
    seen: list[Any] = []

    async def handle(messages: list[Message[Any]]) -> None:
        seen.extend(messages)

    future = {"type": "lead.rejected", "schema_version": 99, "event_id": "x"}
    async with Publisher(settings) as pub:
        await pub.publish(topics.OUTCOMES, orjson.dumps(future), key="k")
        runner: ConsumerRunner[Any] = ConsumerRunner(
            settings,
            topics=[topics.OUTCOMES],
            group_id="g-version",
            decode=decode_outcome,
            handler=handle,
            publisher=pub,
        )
        async with running(runner):
            entries = await read_json(settings, topics.DEADLETTER, min_count=1)
    assert [e["reason_code"] for e in entries] == ["unknown_version"]
    assert seen == []


async def test_a_failed_send_renews_the_producer_and_publishing_goes_on(
    settings: CommonSettings,
) -> None:
    """After a broker restart an idempotent producer can stay wedged; the publisher
    replaces its producer after any failed send instead of timing out forever."""
    await ensure_topics(settings)
    async with Publisher(settings) as pub:
        first = pub.producer

        async def unacknowledged(*_args: object, **_kw: object) -> None:
            # What a wedged producer's send comes to (a bound of 1 µs is no way to get it:
            # bounds are swept every 50 ms, and a local broker may ack sooner).
            raise KafkaTimeoutError()

        first.send = unacknowledged  # type: ignore[method-assign]
        with pytest.raises(KafkaUnavailable):
            await pub.publish(topics.RAW, orjson.dumps({"n": 1}), key="k")
        await pub.publish(topics.RAW, orjson.dumps({"n": 2}), key="k")
        assert pub.producer is not first
    values = sorted(v["n"] for v in await read_json(settings, topics.RAW, min_count=1))
    assert 2 in values  # the renewed producer delivers; the retired one may also flush n=1


async def test_reading_a_topic_says_when_it_cannot_tell_what_is_there(
    settings: CommonSettings,
) -> None:
    """The test helper's read_topic: [] only for a topic that exists and is empty; an
    error for one that does not exist or holds fewer messages than a test waits for."""
    await ensure_topics(settings, [topics.RAW, topics.DEADLETTER])
    assert await read_topic(settings, topics.DEADLETTER) == []
    with pytest.raises(TopicUnreadable, match="no partitions"):
        await read_topic(settings, "no.such.topic", deadline_s=1)
    async with Publisher(settings) as pub:
        await pub.publish(topics.RAW, orjson.dumps({"n": 1}), key="k")
    assert await read_json(settings, topics.RAW, min_count=1) == [{"n": 1}]
    with pytest.raises(TopicUnreadable, match="not the 2 expected"):
        await read_topic(settings, topics.RAW, min_count=2, deadline_s=1)


class _Holder:
    """Holds every message it is handed until flushed (like the archiver's segments)."""

    def __init__(self) -> None:
        self.held_from: dict[tuple[str, int], int] = {}
        self.durable: list[int] = []
        self.pending: list[Message[dict]] = []
        self.released: set[tuple[str, int]] = set()

    async def handle(self, messages: list[Message[dict]]) -> None:
        for m in messages:
            self.held_from.setdefault((m.topic, m.partition), m.offset)
            self.pending.append(m)

    def held(self) -> dict[tuple[str, int], int]:
        return dict(self.held_from)

    def release(self, partitions: set[tuple[str, int]]) -> None:
        self.released |= partitions

    async def flush(self) -> None:
        self.durable += [m.value["n"] for m in self.pending]
        self.pending.clear()
        self.held_from.clear()


async def test_a_holding_handler_is_committed_only_up_to_what_it_still_holds(
    settings: CommonSettings,
) -> None:
    await ensure_topics(settings)
    holder = _Holder()
    async with Publisher(settings) as pub:
        metas = [await pub.publish(topics.RAW, orjson.dumps({"n": n}), key="one") for n in range(3)]
        runner = raw_runner(settings, pub, "g-holding", holder.handle, holding=holder)
        tp = TopicPartition(settings.topic(topics.RAW), metas[0].partition)
        async with running(runner):
            await eventually(lambda: _ret(len(holder.pending)), until=lambda n: n == 3)
            # Held in memory: nothing past the first held offset is committed.
            assert (await runner.consumer.committed(tp) or 0) <= metas[0].offset
            async with runner.exclusive():
                await holder.flush()
            await eventually(
                lambda: runner.consumer.committed(tp),
                until=lambda c: c == metas[-1].offset + 1,
                what="committed after the flush",
            )
            await pub.publish(topics.RAW, orjson.dumps({"n": 3}), key="one")
            await eventually(lambda: _ret(len(holder.pending)), until=lambda n: n == 1)
    # Stopping flushed what was held, then committed it: the group is at the end.
    assert holder.durable == [0, 1, 2, 3]
    assert await group_caught_up(settings, "g-holding", topics.RAW)


async def test_a_busy_consumer_commits_once_per_interval_and_at_once_when_idle(
    settings: CommonSettings,
) -> None:
    """Each commit is a write to the broker's offsets log: a consumer with a backlog commits
    once per ``kafka_commit_interval_ms``, not after every batch; the poll that finds
    nothing new commits at once, so the group is caught up as soon as the work is done."""
    await ensure_topics(settings)
    busy = settings.model_copy(update={"kafka_commit_interval_ms": 60_000})
    batches: list[int] = []

    async def handle(messages: list[Message[dict]]) -> None:
        batches.append(len(messages))

    async with Publisher(settings) as pub:
        metas = [
            await pub.publish(topics.RAW, orjson.dumps({"n": n}), key="one") for n in range(40)
        ]
        runner = raw_runner(busy, pub, "g-commit-interval", handle, max_batch=1)
        commits: list[dict[TopicPartition, int]] = []
        commit = runner.consumer.commit

        async def counted(offsets: dict[TopicPartition, int]) -> None:
            commits.append(dict(offsets))
            await commit(offsets)

        runner.consumer.commit = counted  # type: ignore[method-assign]
        tp = TopicPartition(settings.topic(topics.RAW), metas[0].partition)
        async with running(runner):
            await eventually(lambda: _ret(len(batches)), until=lambda n: n >= 40)
            await eventually(
                lambda: runner.consumer.committed(tp),
                until=lambda c: c == metas[-1].offset + 1,
                what="the backlog committed once the consumer is idle",
            )
            handled = len(batches)
    assert handled >= 40 and set(batches) == {1}  # one message a batch: 40 batches or more
    assert len(commits) <= 4, commits  # the first batch's, then the idle poll's (a rebalance's)


async def test_a_gathering_consumer_takes_a_trickle_in_a_few_batches(
    settings: CommonSettings,
) -> None:
    """``gather_ms``: the broker holds each fetch until a batch's worth came or the time
    passed, so a consumer that need not be prompt (analytics, the archiver, the notifier)
    handles a steady trickle as a few big batches; a prompt one (the processor) takes each
    lead as it comes."""
    await ensure_topics(settings)
    run = base64.b32encode(os.urandom(5)).decode()
    batches: dict[str, list[int]] = {"prompt": [], "gathering": []}

    def counter(name: str) -> Callable[[list[Message[dict]]], Awaitable[None]]:
        async def handle(messages: list[Message[dict]]) -> None:
            ours = sum(1 for m in messages if m.value.get("run") == run)
            if ours:
                batches[name].append(ours)

        return handle

    async with Publisher(settings) as pub:
        prompt = raw_runner(settings, pub, "g-prompt", counter("prompt"))
        gathering = raw_runner(settings, pub, "g-gathering", counter("gathering"), gather_ms=400)
        async with running(prompt), running(gathering):
            for group in ("g-prompt", "g-gathering"):  # past whatever the topic held
                await pub.publish(topics.RAW, orjson.dumps({"run": "mark"}), key="k")
                await wait_caught_up(settings, group, topics.RAW)
            for n in range(30):  # a trickle: one message every 30 ms, ~0.9 s in all
                await pub.publish(topics.RAW, orjson.dumps({"run": run, "n": n}), key=f"k{n}")
                await asyncio.sleep(0.03)
            for name in batches:
                await eventually(
                    lambda name=name: _ret(sum(batches[name])),
                    until=lambda n: n >= 30,
                    what=f"the {name} consumer handled the trickle",
                )
    assert sum(batches["gathering"]) == sum(batches["prompt"]) == 30
    assert len(batches["gathering"]) <= 6, batches["gathering"]
    assert len(batches["prompt"]) >= 12, batches["prompt"]
