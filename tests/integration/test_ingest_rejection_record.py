"""A rejection made while Kafka is away is still published once it is back, and stored:
it is counted and archived, and is in both places, not one."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from services.ingest.app import DEPS
from services.ingest.enqueue import KafkaDown
from shared import topics
from shared.db import connect
from shared.events import LeadRejected, decode_outcome
from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


async def test_rejection_during_a_kafka_outage_is_published_when_it_returns(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    async with running_gateway(settings) as gateway:
        link = gateway.app[DEPS].kafka
        real_publish = link.publish
        refused = {"n": 0}

        async def down_for_a_while(topic: str, value: bytes, *, key: str, bound_s: float) -> None:
            if refused["n"] < 3:
                refused["n"] += 1
                raise KafkaDown("Kafka is unreachable")
            await real_publish(topic, value, key=key, bound_s=bound_s)

        link.publish = down_for_a_while
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{gateway.url}/webhooks/{hook.id}", json={"firstname": "no phone, no email"}
            ) as resp:
                assert resp.status == 400

        async def rejections() -> list[Any]:
            outs = [decode_outcome(m) for m in await read_topic(settings, topics.OUTCOMES)]
            return [o for o in outs if isinstance(o, LeadRejected)]

        published = await eventually(
            rejections,
            until=lambda r: len(r) == 1,
            deadline_s=30,
            what="the rejection reaches the outcome topic",
        )
    assert refused["n"] == 3
    db = await connect(settings.database_url)
    try:
        status = await db.fetchval(
            "SELECT status FROM webhook_requests WHERE request_id = $1", published[0].request_id
        )
    finally:
        await db.close()
    assert status == "rejected"
    assert uuid.UUID(str(published[0].webhook_id)) == hook.id
