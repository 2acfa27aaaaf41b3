"""The one producer configuration and the publisher.

Idempotent, ``acks=all`` (:func:`producer_config`; a test fails if these defaults creep
back: aiokafka's own defaults are acks=1 without idempotence). Every await on Kafka is
bounded by ``kafka_timeout_s`` (aiokafka can hang on a dead broker, aiokafka#1101), so a
caller gets :class:`KafkaUnavailable`, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from prometheus_client import Histogram
from pydantic import BaseModel

from shared.events import encode
from shared.kafka.client import client_config
from shared.kafka.errors import KafkaUnavailable
from shared.logs import get_logger
from shared.settings import CommonSettings

log = get_logger(__name__)

PRODUCE_SECONDS = Histogram(
    "leadwire_kafka_produce_seconds",
    "Time from send to broker acknowledgement (acks=all)",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def producer_config(settings: CommonSettings) -> dict[str, Any]:
    """The only producer configuration leadwire uses: idempotent, acks=all."""
    return {
        **client_config(settings),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 1,
        "request_timeout_ms": int(settings.kafka_timeout_s * 1000),
        "max_batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    }


class Publisher:
    """An idempotent acks=all producer whose every await is bounded."""

    def __init__(self, settings: CommonSettings, *, client_id: str = "leadwire") -> None:
        self._settings = settings
        self._timeout = settings.kafka_timeout_s
        self._client_id = client_id
        self._producer = self._new_producer()
        self._started = False
        # After a failed send the producer is replaced before the next one: across a
        # broker restart aiokafka's idempotent producer can stay wedged (out-of-order
        # sequence numbers), timing out every send until it is recreated.
        self._renew = False
        self._renew_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(client_id=self._client_id, **producer_config(self._settings))

    async def _renew_if_needed(self) -> None:
        if not self._renew:
            return
        async with self._renew_lock:
            if not self._renew:
                return
            fresh = self._new_producer()
            try:
                await asyncio.wait_for(fresh.start(), self._timeout)
            except (TimeoutError, KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fresh.stop(), self._timeout)
                raise KafkaUnavailable(
                    f"cannot reach Kafka at {self._settings.kafka_bootstrap}"
                ) from exc
            old, self._producer, self._renew = self._producer, fresh, False
            # The old one may still deliver what it buffered (consumers dedupe by id).
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info("kafka_producer_renewed")

    async def _retire(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self._timeout)

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._producer.start(), self._timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self.stop()
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self._settings.kafka_bootstrap}"
            ) from exc
        self._started = True

    async def stop(self) -> None:
        """Flush what is buffered and close; bounded, never hangs (aiokafka#1101)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        try:
            await asyncio.wait_for(self._producer.stop(), self._timeout)
        except (TimeoutError, KafkaError, OSError):
            log.warning("kafka_producer_stop_timeout", timeout_s=self._timeout)
        self._started = False

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | None = None,
        timeout: float | None = None,
    ) -> RecordMetadata:
        """Send one message and wait for the broker's acks=all acknowledgement."""
        value = event if isinstance(event, bytes) else encode(event)
        full = self._settings.topic(topic)
        await self._renew_if_needed()
        started = time.perf_counter()
        try:
            meta = await asyncio.wait_for(
                self._producer.send_and_wait(full, value, key=key.encode() if key else None),
                timeout or self._timeout,
            )
        except (TimeoutError, KafkaError, OSError) as exc:
            self._renew = True
            raise KafkaUnavailable(
                f"publish to {full} not acknowledged: {type(exc).__name__}"
            ) from exc
        PRODUCE_SECONDS.labels(topic).observe(time.perf_counter() - started)
        return meta

    async def publish_many(
        self,
        topic: str,
        items: Sequence[tuple[str | None, BaseModel | bytes]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Send many messages, then wait until all are acknowledged (one bound for all)."""
        if not items:
            return
        full = self._settings.topic(topic)
        await self._renew_if_needed()
        started = time.perf_counter()
        producer = self._producer

        async def _send_all() -> None:
            futures = []
            for key, event in items:
                value = event if isinstance(event, bytes) else encode(event)
                futures.append(await producer.send(full, value, key=key.encode() if key else None))
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(_send_all(), timeout or self._timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            self._renew = True
            raise KafkaUnavailable(
                f"publish to {full} not acknowledged: {type(exc).__name__}"
            ) from exc
        PRODUCE_SECONDS.labels(topic).observe(time.perf_counter() - started)

    async def probe(self, timeout: float = 2.0) -> bool:
        """True when the cluster answers a metadata request within ``timeout``."""
        try:
            return bool(await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout))
        except (TimeoutError, KafkaError, OSError):
            return False
