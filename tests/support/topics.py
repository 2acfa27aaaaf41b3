"""Reading what reached a Kafka topic, and whether a consumer group has caught up.

:func:`read_records` reads a topic from its beginning to its end offsets (without a
consumer group, so it never moves anyone's position). It raises :class:`TopicUnreadable`
rather than returning an empty or partial list when it cannot say what the topic holds:
the topic has no partitions (it does not exist), or it could not be read to its end, or
``min_count`` messages did not arrive, within the deadline. A test that expects an empty
topic gets ``[]`` only when the topic exists and is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.kafka import client_config
from shared.settings import CommonSettings
from tests.support.polling import eventually


class TopicUnreadable(AssertionError):
    """What a topic holds could not be established in time."""


async def read_records(
    settings: CommonSettings,
    logical: str,
    *,
    min_count: int = 0,
    deadline_s: float = 30.0,
    bootstrap: str | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``settings.topic(logical)`` from its beginning to its end offsets.

    ``min_count``: keep reading (to the new end offsets) until at least that many records
    arrived; ``bootstrap``: another broker than the settings' (a private Kafka)."""
    name = settings.topic(logical)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    connect = client_config(settings)
    if bootstrap:
        connect["bootstrap_servers"] = bootstrap
    consumer = AIOKafkaConsumer(
        **connect,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, name, deadline)
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        for tp in tps:  # (seek_to_beginning does not reliably reset position() here)
            consumer.seek(tp, begin[tp])
        out: list[ConsumerRecord[bytes, bytes]] = []
        while True:
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                if loop.time() > deadline:
                    raise TopicUnreadable(
                        f"could not read {name} to its end within {deadline_s}s "
                        f"({len(out)} record(s) read)"
                    )
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend(records)
            if len(out) >= min_count:
                return out
            if loop.time() > deadline:
                raise TopicUnreadable(
                    f"{name} holds {len(out)} record(s), not the {min_count} expected "
                    f"within {deadline_s}s"
                )
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def read_topic(settings: CommonSettings, logical: str, **kwargs: Any) -> list[bytes]:
    """The values of :func:`read_records` (tombstones left out)."""
    return [r.value for r in await read_records(settings, logical, **kwargs) if r.value is not None]


async def read_json(settings: CommonSettings, logical: str, **kwargs: Any) -> list[Any]:
    """The values of :func:`read_records`, JSON-decoded."""
    return [orjson.loads(v) for v in await read_topic(settings, logical, **kwargs)]


async def _partitions(
    consumer: AIOKafkaConsumer, name: str, deadline: float
) -> list[TopicPartition]:
    """The topic's partitions once each has a leader (a just-created topic may take a
    moment to show them); TopicUnreadable if it has none by the deadline."""
    loop = asyncio.get_running_loop()
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(name) or set()
        if partitions and all(
            cluster.leader_for_partition(TopicPartition(name, p)) not in (None, -1)
            for p in partitions
        ):
            return [TopicPartition(name, p) for p in sorted(partitions)]
        if loop.time() > deadline:
            raise TopicUnreadable(f"topic {name} has no partitions with a leader (does it exist?)")
        await asyncio.sleep(0.1)


async def group_lag(settings: CommonSettings, group: str, logical: str) -> int | None:
    """Messages of the topic ``group`` has not committed (end offsets minus committed
    offsets, read from Kafka itself, summed over partitions); None when the topic has no
    partitions."""
    name = settings.topic(logical)
    consumer = AIOKafkaConsumer(**client_config(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(name, p) for p in sorted(cluster.partitions_for_topic(name) or ())]
        if not tps:
            return None
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            lag += max(0, ends[tp] - (await consumer.committed(tp) or 0))
        return lag
    finally:
        await consumer.stop()


async def group_caught_up(settings: CommonSettings, group: str, logical: str) -> bool:
    """``group`` has committed the end offset of every non-empty partition of the topic."""
    return await group_lag(settings, group, logical) == 0


async def wait_caught_up(
    settings: CommonSettings, group: str, logical: str, *, deadline_s: float = 30.0
) -> None:
    """Until :func:`group_caught_up` (AssertionError at the deadline)."""
    await eventually(
        lambda: group_caught_up(settings, group, logical),
        deadline_s=deadline_s,
        what=f"group {group} caught up on {logical}",
    )


async def delete_topics_with_prefix(bootstrap: str, prefix: str, timeout_s: float = 15.0) -> None:
    """Delete every topic whose name starts with ``prefix`` (a finished test's topics);
    best effort and bounded: a broker that is away or slow is left as it is."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await asyncio.wait_for(admin.delete_topics(names), timeout_s)
    except (TimeoutError, KafkaError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
