"""The soak's faults on a three-broker cluster (``KAFKA_BROKERS=3 make soak``), and what the
gateway answered while they lasted.

- ``kill -9`` of the broker leading the raw topic's busiest partition (the one with the most
  messages), then its restart;
- ``kill -9`` of the active controller (KRaft's quorum leader), then its restart;
- one broker stopped for 30 s (the short schedule: 10 s) while the other two carry on: the
  gateway keeps answering 202;
- a processor replica killed while its partitions are being reassigned: processor-2 is
  killed and started again, and the moment it rejoins the group (a rebalance) the first
  processor is killed too;
- two brokers stopped at once: below ``min.insync.replicas`` the gateway answers 503,
  never 202, until they are back.

Each fault records the window it wants judged (:class:`Window`); :func:`judge` reads the
load generator's attempts in those windows after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.lag import topic_partitions
from bench.loadgen import LoadGenerator
from bench.stack import EXTRA_PROCESSOR, LaunchedStack
from shared import topics
from shared.kafka import client_config

Action = Callable[[], Awaitable[str]]
# After a kill -9 the survivors wait out the dead broker's session (broker.session.timeout.ms,
# 4 s on the local stack) and elect new leaders for its partitions, and the gateway's Kafka
# probe sees the partitions writable again: writes to them answer 503 meanwhile (the vendor
# retries). Measured here: 7-9 s on 2 loaded cores. From then on two brokers carry them all.
FAILOVER_S = 12.0
# A killed broker stays down at least this long past the failover, so the window judged as
# "two brokers up" never comes out empty however fast its restart is (a restart takes 9-11 s
# here, and the window ends when the broker is back).
JUDGED_S = 4.0


@dataclass
class Window:
    """A stretch of the run (load generator seconds) and what the gateway must answer in it:
    ``202`` (two brokers up: accepted, no 503 storm) or ``503`` (one broker: never 202)."""

    name: str
    expect: int
    start: float = 0.0
    end: float = 0.0


@dataclass
class ClusterFaults:
    stack: LaunchedStack
    clock: Callable[[], float]
    down_s: float = 3.0
    stop_s: float = 30.0
    windows: list[Window] = field(default_factory=list)

    @property
    def kafka(self) -> Any:
        return self.stack.stack.kafka

    async def _restart(self, node_id: int) -> float:
        began = time.monotonic()
        await self.kafka.node(node_id).start(120.0)
        return time.monotonic() - began

    async def _stay_down(self, killed: float) -> None:
        """Keep a killed broker down ``down_s``, and past its failover plus ``JUDGED_S``."""
        await asyncio.sleep(max(self.down_s, killed + FAILOVER_S + JUDGED_S - self.clock()))

    def _after_failover(self, name: str, killed: float) -> None:
        """Judge the rest of a kill -9 as two brokers up: from the failover's end (the dead
        broker fenced after its 4 s session, its partitions' leaders moved) to its return."""
        start = killed + FAILOVER_S
        if self.clock() > start:
            self.windows.append(Window(f"{name}, after failover", 202, start, self.clock()))

    def kill_busiest_leader(self) -> Action:
        async def action() -> str:
            assert self.stack.settings is not None
            partition, count = await busiest_partition(self.stack.settings)
            topic = self.stack.settings.topic(topics.RAW)
            leader = (await self.kafka.partition_leaders(topic))[partition]
            await self.kafka.kill9(leader)
            killed = self.clock()
            await self._stay_down(killed)
            took = await self._restart(leader)
            self._after_failover(f"node {leader} killed (leader)", killed)
            return (
                f"partition {partition} ({count} messages) led by node {leader}: killed, "
                f"back {took:.1f} s after its restart"
            )

        return action

    def kill_controller(self) -> Action:
        async def action() -> str:
            node = self.kafka.active_controller()
            if node is None:
                raise RuntimeError("no active controller found in the quorum state")
            await self.kafka.kill9(node)
            killed = self.clock()
            await self._stay_down(killed)
            took = await self._restart(node)
            self._after_failover(f"node {node} killed (controller)", killed)
            after = self.kafka.active_controller()
            return f"controller node {node} killed; node {after} leads the quorum; back in {took:.1f} s"

        return action

    def stop_one(self, node_id: int) -> Action:
        async def action() -> str:
            window = Window(f"broker {node_id} stopped", 202)
            await self.kafka.node(node_id).stop()
            window.start = self.clock()
            await asyncio.sleep(self.stop_s)
            window.end = self.clock()
            self.windows.append(window)
            took = await self._restart(node_id)
            return f"node {node_id} stopped {self.stop_s:.0f} s, back in {took:.1f} s"

        return action

    def kill_during_reassignment(self) -> Action:
        async def action() -> str:
            await self.stack.kill9([EXTRA_PROCESSOR])
            self.stack.start_service(EXTRA_PROCESSOR)
            await self.stack.wait_ready(EXTRA_PROCESSOR)  # it is joining: the group rebalances
            await self.stack.kill9(["processor"])
            await asyncio.sleep(self.down_s)
            self.stack.start_service("processor")
            took = await self.stack.wait_ready("processor")
            return f"processor killed while {EXTRA_PROCESSOR} joined; ready again in {took:.1f} s"

        return action

    def one_broker_left(self, seconds: float) -> Action:
        async def action() -> str:
            # Judged: requests sent and answered while both were away (a request waits up to
            # the gateway's 5 s enqueue timeout, so the stop lasts longer than that).
            window = Window("only node 1 up", 503)
            await self.kafka.node(3).stop()
            await self.kafka.node(2).stop()
            window.start = self.clock()
            await asyncio.sleep(seconds)
            window.end = self.clock()
            self.windows.append(window)
            began = time.monotonic()
            await asyncio.gather(self._restart(2), self._restart(3))
            return (
                f"nodes 2 and 3 stopped {seconds:.0f} s, back in {time.monotonic() - began:.1f} s"
            )

        return action

    def plan(self, *, short: bool) -> list[tuple[str, Action]]:
        """Every fault; ``short`` (make test's): without the 30 s stop, whose promise (202
        with two brokers up) the kill -9 windows also check."""
        stop = [] if short else [(f"stop broker 3 for {self.stop_s:.0f} s", self.stop_one(3))]
        return [
            ("kill -9 the busiest raw partition's leader", self.kill_busiest_leader()),
            ("kill -9 the active controller", self.kill_controller()),
            *stop,
            ("kill -9 a processor while partitions move", self.kill_during_reassignment()),
            ("two brokers stopped", self.one_broker_left(12.0 if short else 20.0)),
        ]


async def busiest_partition(settings: Any) -> tuple[int, int]:
    """The raw topic's partition holding the most messages: (partition, count)."""
    parts = await topic_partitions(settings, [topics.RAW])
    consumer = AIOKafkaConsumer(**client_config(settings), group_id=None)
    await asyncio.wait_for(consumer.start(), 15)
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(parts), 15)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
    tp, count = max(ends.items(), key=lambda kv: kv[1])
    return tp.partition, count


def judge(gen: LoadGenerator, windows: list[Window]) -> tuple[list[str], list[str]]:
    """Lines describing what the gateway answered in each window, and the promises broken:
    a 503 while two brokers were up, or a new lead acknowledged (202 accepted) with one (an
    attempt counts when it began and was answered inside the window)."""
    lines: list[str] = []
    broken: list[str] = []
    for w in windows:
        answers: dict[str, int] = {}
        for item in [*gen.items.values(), *gen.extras]:
            for a in item.attempts:
                if w.start <= a.at and a.at + a.ms / 1000 <= w.end:
                    # A 202 "duplicate" (a vendor's retry of a lead accepted before) writes
                    # nothing: only a 202 "accepted" is a new acknowledgement.
                    dup = a.status == 202 and a.answer == "duplicate"
                    key = "202 duplicate" if dup else str(a.status or a.error)
                    answers[key] = answers.get(key, 0) + 1
        lines.append(
            f"{w.name} ({w.end - w.start:.0f} s, t={w.start:.0f}-{w.end:.0f} s): gateway answered "
            + (", ".join(f"{k}: {v}" for k, v in sorted(answers.items())) or "nothing")
        )
        if not answers:
            broken.append(f"{w.name}: no request was answered in the window (not judged)")
        if w.expect == 202 and answers.get("503"):
            broken.append(f"{w.name}: {answers['503']} answers 503 with two brokers up")
        if w.expect == 503 and answers.get("202"):
            broken.append(f"{w.name}: {answers['202']} answers 202 below min.insync.replicas")
    return lines, broken
