"""The consumer runner with a holding handler across rebalances, on a real broker.

A rebalance takes every partition away (aiokafka's protocol is eager), the holding handler
drops what it held of them, and the group may give them straight back to the same runner.
Nothing handled before the rebalance may be committed after it: the records it dropped
were never stored, and a commit past them loses them (the archive soak's missing rows)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import topics
from shared.kafka import ConsumerRunner, Message, Publisher, client_config, ensure_topics
from shared.kafka.rebalance import Rebalance
from shared.settings import CommonSettings
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


class _Holder:
    """Holds what it is handed until flushed, and drops it on release, as the archiver's
    segment writer does. A message ``{"wait": true}`` is handled once ``go`` is set."""

    def __init__(self) -> None:
        self.pending: list[Message[dict]] = []
        self.durable: list[int] = []
        self.releases = 0
        self.waiting, self.go = asyncio.Event(), asyncio.Event()

    async def handle(self, messages: list[Message[dict]]) -> None:
        if any(m.value.get("wait") for m in messages):
            self.waiting.set()
            await self.go.wait()
        self.pending += messages

    def held(self) -> dict[tuple[str, int], int]:
        low: dict[tuple[str, int], int] = {}
        for m in self.pending:
            low[(m.topic, m.partition)] = min(low.get((m.topic, m.partition), m.offset), m.offset)
        return low

    def release(self, partitions: set[tuple[str, int]]) -> None:
        self.pending = [m for m in self.pending if (m.topic, m.partition) not in partitions]
        self.releases += bool(partitions)

    async def flush(self) -> None:
        self.durable += [m.value["n"] for m in self.pending]
        self.pending.clear()


async def _value(value: Any) -> Any:
    return value


async def _polled_after(runner: ConsumerRunner[Any], since: float) -> None:
    await eventually(lambda: _value(runner._last_poll), until=lambda t: t > since, what="a poll")


async def test_a_partition_given_back_is_not_committed_past_what_was_dropped(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequence of the lost archive rows: records held, a rebalance begins while a
    batch is in hand (the revoke waits for it), the held records are dropped, and the
    partitions come straight back. Here they come back paused, so the runner's first polls
    find nothing of them, as when their fetch position is not known yet: a pending offset
    left from before the rebalance would now be committed, past the dropped records, and
    the runner would read on from there."""
    await ensure_topics(settings)
    group = "g-given-back"
    holder = _Holder()
    given_back = asyncio.Event()
    revoked, assigned = Rebalance.on_partitions_revoked, Rebalance.on_partitions_assigned

    async def revoke_in_a_batch(self: Rebalance, partitions: set[TopicPartition]) -> None:
        if partitions:  # the rebalance has begun: the batch in hand may finish now
            holder.go.set()
        await revoked(self, partitions)

    async def assigned_then_paused(self: Rebalance, partitions: set[TopicPartition]) -> None:
        await assigned(self, partitions)
        if holder.releases and not given_back.is_set():
            self._runner.consumer.pause(*partitions)
            given_back.set()

    monkeypatch.setattr(Rebalance, "on_partitions_revoked", revoke_in_a_batch)
    monkeypatch.setattr(Rebalance, "on_partitions_assigned", assigned_then_paused)
    async with Publisher(settings) as pub:
        metas = [await pub.publish(topics.RAW, orjson.dumps({"n": n}), key="one") for n in range(3)]
        tp = TopicPartition(settings.topic(topics.RAW), metas[0].partition)
        runner: ConsumerRunner[dict] = ConsumerRunner(
            settings,
            topics=[topics.RAW],
            group_id=group,
            decode=orjson.loads,
            handler=holder.handle,
            publisher=pub,
            holding=holder,
        )
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: _value(len(holder.pending)), until=lambda n: n == 3)
            last = await pub.publish(topics.RAW, orjson.dumps({"n": 3, "wait": True}), key="one")
            await asyncio.wait_for(holder.waiting.wait(), 30)
            # A member joins for another topic: every partition is revoked (while the
            # batch above is in hand), then given straight back to the runner.
            other = AIOKafkaConsumer(
                settings.topic(topics.ALERTS), **client_config(settings), group_id=group
            )
            await other.start()
            try:

                async def joined() -> bool:
                    await other.getmany(timeout_ms=50)
                    return given_back.is_set()

                await eventually(joined, what="the partitions given back")
                for _ in range(2):  # two turns of the runner's loop after the rebalance
                    await _polled_after(runner, time.monotonic())
                committed = await runner.consumer.committed(tp) or 0
                assert committed <= metas[0].offset, (
                    f"committed {committed}, past offsets {metas[0].offset}-{last.offset}: "
                    "dropped on the rebalance and never stored"
                )
            finally:
                # The member leaves: the runner reads the partition again from the commit.
                await other.stop()
            await eventually(
                lambda: _value(len(holder.pending)), until=lambda n: n == 4, what="read again"
            )
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
    assert holder.durable == [0, 1, 2, 3]
