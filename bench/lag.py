"""Consumer group lags, read from Kafka itself: each group's committed offsets against the
end offsets of the topics it consumes (a message counts as done once its group committed
past it, as the services' own lag metric counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import topics
from shared.kafka import client_config
from shared.settings import CommonSettings

# Per service: its consumer group and the topics it consumes.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "processor": ("leadwire-processor", (topics.RAW,)),
    "notifier": ("leadwire-notifier", (topics.OUTCOMES, topics.ALERTS)),
    "analytics": ("leadwire-analytics", (topics.OUTCOMES,)),
    "archiver": ("leadwire-archiver", (topics.OUTCOMES,)),
}


async def topic_partitions(
    settings: CommonSettings, logical: Iterable[str]
) -> list[TopicPartition]:
    """The partitions of the given topics (those that exist), from fresh cluster metadata."""
    admin = AIOKafkaAdminClient(**client_config(settings), request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        found = await asyncio.wait_for(
            admin.describe_topics([settings.topic(n) for n in logical]), 10
        )
    finally:
        await asyncio.wait_for(admin.close(), 10)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in found
        if t.get("error_code") == 0
        for p in t.get("partitions", [])
    ]


@dataclass
class Reading:
    """One look at the topics: messages per topic (sum of end offsets) and lag per service."""

    ends: dict[str, int] = field(default_factory=dict)  # logical topic -> messages
    lags: dict[str, int] = field(default_factory=dict)  # service -> lag

    @property
    def lag(self) -> int:
        return sum(self.lags.values())


class LagReader:
    """Reads every group's lag with one admin client and one consumer, kept open between
    readings (so polling it often costs the broker little)."""

    def __init__(
        self,
        settings: CommonSettings,
        groups: Mapping[str, tuple[str, tuple[str, ...]]] = GROUPS,
    ) -> None:
        self._settings = settings
        self._groups = dict(groups)
        self._admin = AIOKafkaAdminClient(**client_config(settings), request_timeout_ms=5000)
        self._consumer = AIOKafkaConsumer(
            **client_config(settings),
            group_id=None,
            request_timeout_ms=5000,
            enable_auto_commit=False,
        )
        self._parts: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> LagReader:
        await asyncio.wait_for(self._admin.start(), 10)
        try:
            await asyncio.wait_for(self._consumer.start(), 10)
        except BaseException:
            await asyncio.wait_for(self._admin.close(), 10)
            raise
        logical = sorted({t for _, names in self._groups.values() for t in names})
        parts = await topic_partitions(self._settings, logical)
        for name in logical:
            full = self._settings.topic(name)
            self._parts[name] = [tp for tp in parts if tp.topic == full]
            if not self._parts[name]:
                await self.__aexit__(None, None, None)
                raise RuntimeError(f"topic {full} not found")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await asyncio.wait_for(self._consumer.stop(), 10)
        finally:
            await asyncio.wait_for(self._admin.close(), 10)

    async def read(self, services: Iterable[str] | None = None) -> Reading:
        """End offsets of every topic, and the lags of ``services`` (default: every group).
        Each group costs the broker two requests (its coordinator, its offsets): a poller
        that knows a group has caught up need not ask again."""
        every = [tp for parts in self._parts.values() for tp in parts]
        ends = await asyncio.wait_for(self._consumer.end_offsets(every), 10)
        reading = Reading(
            ends={name: sum(ends[tp] for tp in parts) for name, parts in self._parts.items()}
        )
        wanted = self._groups if services is None else {s: self._groups[s] for s in services}
        for service, (group, logical) in wanted.items():
            committed = await asyncio.wait_for(self._admin.list_consumer_group_offsets(group), 10)
            lag = 0
            for name in logical:
                for tp in self._parts[name]:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag += max(ends[tp] - done, 0)
            reading.lags[service] = lag
        return reading


async def group_lags(settings: CommonSettings) -> dict[str, int]:
    """Per service: end offsets minus committed offsets of its group, over its topics."""
    async with LagReader(settings) as reader:
        return (await reader.read()).lags
