"""D2: Kafka stopped while load runs. Every request gets 202 or 503 (none hangs, none is
reset), every 503 within the bound, and after Kafka returns every 202 ever given is in the topic (lost = 0).

The shared test stack's Kafka is used by everyone, so this test starts a private,
throwaway Kafka of its own (its own stack name and ports), stops it under load and starts
it again. Postgres is the test stack's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest

from infra import Stack
from shared import topics
from shared.events import decode_raw
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.conftest import ROOT
from tests.support.ingest import create_webhook, ingest_settings, running_gateway
from tests.support.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRIVATE_KAFKA_PORT = 39192
ENQUEUE_BOUND_S = 2.0
# The bound plus scheduling slack on a busy 2-core machine.
ANSWER_BOUND_S = ENQUEUE_BOUND_S + 1.5
# A request without an answer by then hangs (the gateway answers within the bound).
HANG_S = 10.0
CLIENTS = 6


@dataclass
class Load:
    # key, status (0: no answer), sent, latency: every request sent, answered or not
    results: list[tuple[str, int, float, float]] = field(default_factory=list)
    # why a request got no answer (a hang, a reset connection)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def accepted(self) -> dict[str, str]:
        return {k: "" for k, s, _, _ in self.results if s == 202}


async def _client(url: str, load: Load, n: int) -> None:
    i = 0
    timeout = aiohttp.ClientTimeout(total=HANG_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not load.stop.is_set():
            i += 1
            key = f"d2-{n}-{i}"
            body = orjson.dumps({"first_name": "D2", "email": f"d2-{n}-{i}@example.com"})
            sent = time.monotonic()
            headers = {"Content-Type": "application/json", "webhook-id": key}
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = 0
                load.failures.append(f"{key}: {exc!r} after {time.monotonic() - sent:.1f}s")
            load.results.append((key, status, sent, time.monotonic() - sent))
            await asyncio.sleep(0.02)


async def test_d2_kafka_stopped_under_load_then_back(settings: CommonSettings) -> None:
    stack = Stack.for_name("ingest-d2", ROOT, kafka_port=PRIVATE_KAFKA_PORT)
    await stack.start(components=["kafka"], timeout_s=180)
    bootstrap = f"127.0.0.1:{PRIVATE_KAFKA_PORT}"
    private = ingest_settings(settings, kafka_bootstrap=bootstrap, kafka_timeout_s=3.0)
    try:
        await ensure_topics(private, (topics.RAW, topics.OUTCOMES))
        hook = await create_webhook(settings.database_url)
        async with running_gateway(
            private,
            enqueue_timeout_s=ENQUEUE_BOUND_S,
            kafka_probe_interval_s=1.0,
            ip_rate_per_minute=0,
            create_topics=False,
        ) as gw:
            load = Load()
            clients = [
                asyncio.create_task(_client(gw.hook_url(hook), load, n)) for n in range(CLIENTS)
            ]
            try:
                await asyncio.sleep(3)
                before = len(load.accepted())
                down_at = time.monotonic()
                await stack.stop(components=["kafka"])
                await asyncio.sleep(5)
                up_at = time.monotonic()
                await stack.start(components=["kafka"], timeout_s=180)
                # Run on until the gateway has accepted for a couple of seconds again.
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    recent = [s for _, s, sent, _ in load.results if sent > time.monotonic() - 2]
                    if recent.count(202) >= 10 and all(s == 202 for s in recent[-10:]):
                        break
                    await asyncio.sleep(0.5)
            finally:
                load.stop.set()
                ended = await asyncio.gather(*clients, return_exceptions=True)
        crashed = [e for e in ended if isinstance(e, BaseException)]
        assert crashed == [], f"load clients crashed: {crashed}"

        statuses = [s for _, s, _, _ in load.results]
        slow_503 = [lat for _, s, _, lat in load.results if s == 503 and lat > ANSWER_BOUND_S]
        during = [s for _, s, sent, _ in load.results if down_at + ANSWER_BOUND_S < sent < up_at]
        accepted = {k for k, s, _, _ in load.results if s == 202}
        after = len([1 for _, s, sent, _ in load.results if s == 202 and sent > up_at])

        raw = [decode_raw(m) for m in await read_topic(private, topics.RAW, bootstrap=bootstrap)]
        in_topic = {e.idempotency_key for e in raw}
        lost = accepted - in_topic
        print(
            f"\nD2: requests={len(statuses)} acknowledged(202)={len(accepted)} "
            f"(before outage {before}, after {after}) 503={statuses.count(503)} "
            f"other={len([s for s in statuses if s not in (202, 503)])} "
            f"unanswered={len(load.failures)} "
            f"slowest 503={max((lat for _, s, _, lat in load.results if s == 503), default=0):.2f}s "
            f"in topic={len(in_topic)} lost={len(lost)}"
        )
        assert load.failures == [], f"requests without an answer: {load.failures[:5]}"
        assert set(statuses) <= {202, 503}, f"unexpected statuses: {set(statuses)}"
        assert before > 0 and after > 0
        assert statuses.count(503) > 0 and during and set(during) == {503}
        assert slow_503 == [], f"503s slower than {ANSWER_BOUND_S}s: {slow_503[:5]}"
        assert lost == set(), f"lost {len(lost)} acknowledged leads"
        # Retries with the same key never doubled anything: keys are unique per request here.
        assert len(in_topic) >= len(accepted)
        assert uuid.UUID(str(raw[0].request_id))
    finally:
        await stack.destroy()
