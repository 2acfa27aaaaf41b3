"""A short soak of the archive: outcomes of many workspaces arrive for a while, with
redeliveries, while a second archiver joins the group (partitions move, held buffers are
dropped and rebuilt by the new owner) and the first one stops. At the end the bucket and
the index agree: every request on exactly one segment line, with its index row."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared import topics
from shared.kafka import Publisher, ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    agreement,
    archived_records,
    archiver_settings,
    index_count,
    running_archiver,
    wait_archived,
)
from tests.support.events import mixed_outcomes
from tests.support.polling import eventually
from tests.support.topics import wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKSPACES = 12
PER_WORKSPACE = 60
ROUNDS = 20


async def test_bucket_and_index_agree_after_load_and_rebalances(settings: CommonSettings) -> None:
    await ensure_topics(settings)
    events = []
    for _ in range(WORKSPACES):
        events += mixed_outcomes(PER_WORKSPACE, uuid.uuid4(), uuid.uuid4())
    group = f"{settings.topic_prefix}archiver"
    small = {"archiver_group": group, "archive_segment_records": 25, "archive_max_batch": 50}

    async def load() -> None:
        per_round = len(events) // ROUNDS
        async with Publisher(settings, client_id="test-soak") as pub:
            for i in range(ROUNDS):
                chunk = events[i * per_round : (i + 1) * per_round]
                chunk += events[: (i * 7) % 30]  # redeliveries of earlier outcomes
                await pub.publish_many(topics.OUTCOMES, [(str(e.workspace_id), e) for e in chunk])
                await asyncio.sleep(0.3)

    producing = asyncio.create_task(load())
    async with running_archiver(archiver_settings(settings, **small)):
        await eventually(
            lambda: index_count(settings), until=lambda n: n >= 100, deadline_s=60, what="100"
        )
        async with running_archiver(archiver_settings(settings, **small)):
            await eventually(
                lambda: index_count(settings), until=lambda n: n >= 400, deadline_s=60, what="400"
            )
        # The second one stopped (stored what it held): the first takes every partition.
        await producing
        await wait_archived(settings, len(events), deadline_s=90)
        await wait_caught_up(settings, group, topics.OUTCOMES, deadline_s=60)

    records = await archived_records(settings)
    assert sorted(r["request_id"] for r in records) == sorted(str(e.request_id) for e in events)
    (await agreement(settings)).assert_ok()
