"""An unkeyed request answered 503 after a publish timeout may still reach Kafka (the
idempotent producer keeps retrying it). A byte-identical retry, on this worker or another,
reuses its request id, so the processor can never make a second lead of it."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from services.ingest.app import DEPS
from shared import topics
from shared.events import decode_raw
from shared.kafka import KafkaUnavailable
from shared.settings import CommonSettings
from tests.support.ingest import create_webhook, running_gateway
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


async def test_unkeyed_retry_of_an_indeterminate_503_reuses_the_request_id(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url)
    body = orjson.dumps({"phone_number": "(626) 663-3444", "firstname": "Ann"})
    other = orjson.dumps({"phone_number": "(626) 663-3445", "firstname": "Bob"})
    headers = {"Content-Type": "application/json"}

    async with running_gateway(settings) as first, running_gateway(settings) as second:
        link = first.app[DEPS].kafka
        real_publish = link.publish
        calls = {"n": 0}

        async def delivered_but_timed_out(topic, value, *, key, bound_s):
            calls["n"] += 1
            await real_publish(topic, value, key=key, bound_s=bound_s)
            if calls["n"] == 1:
                raise KafkaUnavailable("not acknowledged in time")  # but Kafka has it

        link.publish = delivered_but_timed_out
        async with aiohttp.ClientSession() as http:
            url = f"{first.url}/webhooks/{hook.id}"
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 503
                assert "never makes a second lead" in (await resp.json())["errors"][0]["message"]
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 202
                retried = (await resp.json())["request_id"]
            async with http.post(url, data=other, headers=headers) as resp:
                assert resp.status == 202
                different = (await resp.json())["request_id"]

            # Another worker heard of it through Postgres and answers the same.
            async def second_worker_id() -> str:
                async with http.post(
                    f"{second.url}/webhooks/{hook.id}", data=body, headers=headers
                ) as r:
                    assert r.status == 202
                    return str((await r.json())["request_id"])

            from_second = await eventually(
                second_worker_id,
                until=lambda rid: rid == retried,
                what="second worker reuses the request id",
            )

    raw = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
    ids = [str(e.request_id) for e in raw]
    assert ids.count(retried) >= 3  # the timed-out original and its retries: one request
    assert retried == from_second != different
    assert uuid.UUID(different) and ids.count(different) == 1
