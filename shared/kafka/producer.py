"""The one producer configuration and the publisher.

Idempotent, ``acks=all`` (:func:`producer_config`; a test fails if these defaults creep
back: aiokafka's own defaults are acks=1 without idempotence). Every await on Kafka is
bounded by ``kafka_timeout_s`` (aiokafka can hang on a dead broker, aiokafka#1101), so a
caller gets :class:`KafkaUnavailable`, never a hang.

Batching: a produce request carries every message of a partition that waited while the
previous one was in flight, and with :class:`AdaptiveLinger` a new batch waits a little
(at most ``linger_max_ms``, 4 ms) for company while single sends come in faster than one
per that time, so concurrent requests share one produce request and one acknowledgement
(fewer requests for the broker and for us); a lone send goes at once. Nothing changes for
the caller: :meth:`Publisher.publish` returns once the broker acknowledged (acks=all).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import RecordMetadata
from prometheus_client import Histogram
from pydantic import BaseModel

from shared.deadlines import Deadlines
from shared.events import encode
from shared.kafka.client import client_config
from shared.kafka.errors import KafkaUnavailable
from shared.logs import get_logger
from shared.metrics import Children
from shared.settings import CommonSettings

log = get_logger(__name__)

PRODUCE_SECONDS = Histogram(
    "leadwire_kafka_produce_seconds",
    "Time from send to broker acknowledgement (acks=all)",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_produce_seconds = Children(PRODUCE_SECONDS)


def producer_config(settings: CommonSettings) -> dict[str, Any]:
    """The only producer configuration leadwire uses: idempotent, acks=all."""
    return {
        **client_config(settings),
        "enable_idempotence": True,
        "acks": "all",
        # Publisher.publish sets each new batch's linger itself (AdaptiveLinger).
        "linger_ms": 0,
        "request_timeout_ms": int(settings.kafka_timeout_s * 1000),
        "max_batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "partitioner": KeyPartitioner(),
    }


class KeyPartitioner:
    """aiokafka's default partitioner (Java's: murmur2 of the key, positive, modulo the
    partition count; a message without a key goes to a random available partition), with
    the hash of recent keys remembered: the pure-Python murmur2 cost more than the rest
    of a send, and a few keys (workspace ids) come back all the time."""

    def __init__(self, max_keys: int = 4096) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


class AdaptiveLinger:
    """How long a new batch waits for more messages: 0 while sends are sparse (a lone
    lead is sent at once), else up to ``max_s``: ``batch`` mean gaps between recent sends,
    so a batch expects a few messages. The mean gap is a moving average (``weight`` for
    the newest gap)."""

    def __init__(
        self,
        max_s: float = 0.004,
        *,
        batch: int = 4,
        weight: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_s
        self._batch = batch
        self._weight = weight
        self._clock = clock
        self._last = clock()
        self._gap = 1.0  # start as if sends were rare

    def next(self) -> float:
        """Record a send now; the linger for a batch it starts (seconds)."""
        now = self._clock()
        gap, self._last = now - self._last, now
        self._gap += self._weight * (min(gap, 1.0) - self._gap)
        if self._gap >= self._max:
            return 0.0
        return min(self._max, self._batch * self._gap)


class Publisher:
    """An idempotent acks=all producer whose every await is bounded."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        client_id: str = "leadwire",
        linger_max_ms: float = 4.0,
    ) -> None:
        self._settings = settings
        self._timeout = settings.kafka_timeout_s
        self._client_id = client_id
        self._linger = AdaptiveLinger(linger_max_ms / 1000)
        self._deadlines = Deadlines()
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
        if self._renew:
            await self._renew_if_needed()
        producer = self._producer
        _set_linger(producer, self._linger.next())
        started = time.perf_counter()
        # (a bound per send without a timer per send: shared.deadlines)
        bound = self._deadlines.start(timeout or self._timeout)
        try:
            try:
                sent = await producer.send(full, value, key=key.encode() if key else None)
                meta = await sent
            except asyncio.CancelledError:
                bound.raise_if_fired()
                raise
            finally:
                bound.done()
        except (TimeoutError, KafkaError, OSError) as exc:
            self._renew = True
            raise KafkaUnavailable(
                f"publish to {full} not acknowledged: {type(exc).__name__}"
            ) from exc
        _produce_seconds(topic).observe(time.perf_counter() - started)
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
        # Every message is appended before the sender runs: they go out together.
        _set_linger(producer, 0.0)

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
        _produce_seconds(topic).observe(time.perf_counter() - started)

    async def probe(self, timeout: float = 2.0) -> bool:
        """True when the cluster answers a metadata request within ``timeout``."""
        try:
            return bool(await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout))
        except (TimeoutError, KafkaError, OSError):
            return False


def _set_linger(producer: AIOKafkaProducer, seconds: float) -> None:
    """The linger of the next batch the producer starts. aiokafka takes ``linger_ms`` once,
    at construction, and gives each new batch its accumulator's value: that value is what
    changes here (tests/unit/test_kafka_batching.py fails if aiokafka renames it)."""
    producer._message_accumulator._linger_time = seconds
