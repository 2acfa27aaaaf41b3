"""Topics: created if missing, with every partition's leader elected before returning.

Each topic is made with the cluster's replication (``kafka_replication_factor``) and
``min.insync.replicas`` (``kafka_min_insync_replicas``): on a three-broker cluster 3 and 2,
so with the producer's ``acks=all`` an acknowledged message is on two brokers, and a write
with only one broker left is refused (NOT_ENOUGH_REPLICAS), never acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared import topics
from shared.kafka.client import client_config
from shared.kafka.errors import KafkaUnavailable
from shared.settings import CommonSettings


async def ensure_topics(
    settings: CommonSettings, names: Iterable[str] = topics.ALL, *, partitions: int | None = None
) -> None:
    """Create the topics (prefixed) if missing, with ``partitions`` (default
    ``kafka_partitions``) and the cluster's replication, and wait until every partition has
    a leader; existing topics are left as they are."""
    names = list(names)
    count = partitions or settings.kafka_partitions
    configs = {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}
    admin = AIOKafkaAdminClient(
        **client_config(settings),
        request_timeout_ms=int(settings.kafka_timeout_s * 1000),
    )
    await asyncio.wait_for(admin.start(), settings.kafka_timeout_s)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(n),
                num_partitions=count,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=configs,
            )
            for n in names
            if settings.topic(n) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        # create_topics returns before a new topic has partition leaders in the brokers'
        # metadata (seconds on a fresh broker); a send in that window waits or times out.
        full = [settings.topic(n) for n in names]
        deadline = asyncio.get_running_loop().time() + 3 * settings.kafka_timeout_s
        while True:
            described = await admin.describe_topics(full)
            if all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaUnavailable(f"topics not ready: {', '.join(full)}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
