"""A stuck consumer on the service skeleton, against real Kafka: ``/readyz`` turns 503
within the bound naming the partition, and exactly ONE system-health alert (firing) is
published on the alerts topic; one resolved event follows when it recovers (H4). And the
age of the oldest message a runner has not committed, which the archiver's "archive
behind" alert reads."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import SystemHealthAlert, decode_alert
from shared.health import age_check
from shared.http import ReadyCheck
from shared.kafka import ConsumerRunner, Message, Publisher, ensure_topics
from shared.service import Service
from shared.settings import CommonSettings
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


async def health_alerts(settings: CommonSettings) -> list[SystemHealthAlert]:
    alerts = [decode_alert(v) for v in await read_topic(settings, topics.ALERTS)]
    return [a for a in alerts if isinstance(a, SystemHealthAlert)]


async def readyz(port: int) -> tuple[int, dict]:
    """(status, body) of ``/readyz``; (0, {}) while the server is not up yet."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as r,
        ):
            return r.status, orjson.loads(await r.read())
    except aiohttp.ClientConnectionError:
        return 0, {}


async def test_a_stuck_consumer_is_not_ready_within_the_bound_and_raises_one_alert(
    settings: CommonSettings,
) -> None:
    s = settings.model_copy(update={"health_alert_after_s": 1.0, "health_check_interval_s": 0.2})
    await ensure_topics(s, [topics.RAW, topics.ALERTS, topics.DEADLETTER])
    database_away = [True]
    handled: list[int] = []

    async def handle(messages: list[Message[dict]]) -> None:
        if database_away[0]:
            raise ConnectionRefusedError("database away")  # transient: retried for ever
        handled.extend(m.value["n"] for m in messages)

    ticks = itertools.count()

    def tick() -> bool:  # counts the monitor's rounds (every round evaluates every check)
        next(ticks)
        return True

    port = free_port()
    stop = asyncio.Event()
    async with Publisher(s, client_id="test-stuck") as pub:
        meta = await pub.publish(topics.RAW, orjson.dumps({"n": 1}), key="k")

        async def service() -> None:
            async with Service("stuckling", stop) as svc:
                publisher = await svc.publisher(s, client_id="stuckling")
                runner: ConsumerRunner[dict] = ConsumerRunner(
                    s,
                    topics=[topics.RAW],
                    group_id="g-stuck",
                    decode=orjson.loads,
                    handler=handle,
                    publisher=publisher,
                    stuck_after_s=1.0,
                    max_backoff_s=0.2,
                )
                checks: dict[str, ReadyCheck] = {"consumer": runner.readiness}
                await svc.serve_ops(s, checks=checks, port=port)
                svc.watch_health(s, publisher, {**checks, "ticks": tick})
                svc.task("consumer", runner.run(), on_stop=runner.stop)
                await svc.run()

        task = asyncio.create_task(service())
        try:
            started = asyncio.get_running_loop().time()
            _, body = await eventually(
                lambda: readyz(port),
                until=lambda r: (
                    r[0] == 503 and "stuck" in r[1].get("details", {}).get("consumer", {})
                ),
                deadline_s=30,
                what="/readyz 503 naming the stuck partition",
            )
            [stuck] = body["details"]["consumer"]["stuck"]
            assert (stuck["topic"], stuck["partition"], stuck["offset"]) == (
                topics.RAW,
                meta.partition,
                meta.offset,
            )
            assert stuck["error"] == "ConnectionRefusedError"
            firing = await eventually(
                lambda: health_alerts(s), until=lambda a: len(a) >= 1, what="a firing alert"
            )
            # Still stuck for many more rounds of the monitor: nothing more is raised.
            seen = next(ticks)
            await eventually(
                lambda: _value(next(ticks)), until=lambda n: n >= seen + 15, what="more rounds"
            )
            assert await health_alerts(s) == firing
            [alert] = firing
            assert (alert.service, alert.check, alert.state) == ("stuckling", "consumer", "firing")
            assert '"error":"ConnectionRefusedError"' in alert.detail
            assert asyncio.get_running_loop().time() - started < 30

            database_away[0] = False  # recovers: handled, ready, one resolved event
            await eventually(lambda: _value(handled), until=lambda h: h == [1], what="handled")
            await eventually(lambda: readyz(port), until=lambda r: r[0] == 200, what="ready")
            alerts = await eventually(
                lambda: health_alerts(s), until=lambda a: len(a) >= 2, what="a resolved alert"
            )
            seen = next(ticks)
            await eventually(
                lambda: _value(next(ticks)), until=lambda n: n >= seen + 10, what="more rounds"
            )
            alerts = await health_alerts(s)
            assert [(a.check, a.state) for a in alerts] == [
                ("consumer", "firing"),
                ("consumer", "resolved"),
            ]
            assert alerts[1].since == alerts[0].since
            assert alerts[1].event_id != alerts[0].event_id
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def _value(value: object) -> object:
    return value


async def test_the_runner_says_how_old_its_oldest_uncommitted_message_is(
    settings: CommonSettings,
) -> None:
    """What the archiver's "archive behind" alert reads: while a batch waits for a
    dependency, the age of its oldest message (from the message's own timestamp); 0 once
    it is committed."""
    await ensure_topics(settings, [topics.RAW, topics.DEADLETTER])
    away = [True]

    async def handle(messages: list[Message[dict]]) -> None:
        if away[0]:
            raise ConnectionRefusedError("S3 away")

    twenty_minutes_ago = int((time.time() - 1200) * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(topics.RAW), b'{"n": 1}', key=b"k", timestamp_ms=twenty_minutes_ago
        )
    finally:
        await producer.stop()
    async with Publisher(settings, client_id="test-behind") as pub:
        runner: ConsumerRunner[dict] = ConsumerRunner(
            settings,
            topics=[topics.RAW],
            group_id="g-behind",
            decode=orjson.loads,
            handler=handle,
            publisher=pub,
            max_backoff_s=0.2,
        )
        behind = age_check(runner.oldest_pending_age_s, 600.0)
        task = asyncio.create_task(runner.run())
        try:
            age = await eventually(
                lambda: _value(runner.oldest_pending_age_s()),
                until=lambda a: a > 0,
                what="an uncommitted message",
            )
            assert 1190 < age < 1300
            ok, details = behind()
            assert not ok and details["limit_s"] == 600.0
            away[0] = False
            await eventually(
                lambda: _value(runner.oldest_pending_age_s()),
                until=lambda a: a == 0,
                what="nothing uncommitted",
            )
            assert behind()[0]
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
