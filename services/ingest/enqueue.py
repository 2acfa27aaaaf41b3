"""The gateway's link to Kafka: one idempotent acks=all publisher, and whether it works.

A POST is answered ``202`` only after Kafka acknowledged its message (acks=all). When it
does not within ``enqueue_timeout_s`` the link is marked down and the POST gets ``503``;
while it is down, POSTs get ``503`` at once instead of each waiting out the bound (and
piling up in the producer's buffer), and a probe runs every half second until the cluster
answers again. ``/readyz`` reports the same state.

A ``503`` means "not acknowledged", not "not delivered": a message that timed out may
still reach the topic when Kafka comes back. Vendors that retry with an idempotency key
(``webhook-id`` or the webhook's idempotency field) get the same request id, so the retry
never makes a second lead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka.errors import KafkaError

from shared import topics
from shared.kafka import KafkaUnavailable, Publisher, ensure_topics
from shared.logs import get_logger
from shared.retry import retry_until
from shared.settings import CommonSettings

log = get_logger(__name__)

# Kafka not reachable yet: start-up waits and retries.
_UNAVAILABLE = (KafkaUnavailable, KafkaError, OSError, TimeoutError)


class KafkaDown(KafkaUnavailable):
    """Refused without trying: the link is known to be down."""


class KafkaLink:
    def __init__(
        self,
        settings: CommonSettings,
        *,
        probe_interval_s: float = 5.0,
        down_probe_interval_s: float = 0.5,
        publisher_factory: Callable[[], Publisher] | None = None,
    ) -> None:
        self._settings = settings
        self._factory = publisher_factory or (
            lambda: Publisher(settings, client_id="leadwire-ingest")
        )
        self._probe_interval = probe_interval_s
        self._down_interval = down_probe_interval_s
        self.publisher: Publisher | None = None
        self.up = False
        self._wake = asyncio.Event()

    def ready(self) -> bool:
        return self.up

    async def publish(self, topic: str, value: bytes, *, key: str, bound_s: float) -> None:
        """Publish and wait for acks=all; raises KafkaUnavailable (fast while down)."""
        publisher = self.publisher
        if publisher is None or not self.up:
            raise KafkaDown("Kafka is unreachable")
        try:
            await publisher.publish(topic, value, key=key, timeout=bound_s)
        except KafkaUnavailable:
            self.mark_down()
            raise

    def mark_down(self) -> None:
        if self.up:
            log.warning("kafka_marked_down")
        self.up = False
        self._wake.set()

    async def run(self) -> None:
        """Start the publisher (waiting for Kafka), then probe it; until cancelled."""
        try:
            # Only cancellation (the service stopping) ends the wait: a fresh event.
            publisher = await retry_until(
                asyncio.Event(), "kafka", self._start_publisher, retry_on=_UNAVAILABLE
            )
            self.publisher = publisher
            self.up = True
            log.info("kafka_connected")
            while True:
                interval = self._probe_interval if self.up else self._down_interval
                try:
                    await asyncio.wait_for(self._wake.wait(), interval)
                except TimeoutError:
                    pass
                self._wake.clear()
                alive = await publisher.probe(timeout=min(2.0, self._settings.kafka_timeout_s))
                if alive and not self.up:
                    # The publisher renews its producer after the failed sends itself
                    # (shared.kafka.Publisher: a producer can stay wedged after a restart).
                    self.up = True
                    log.info("kafka_back")
                elif not alive and self.up:
                    log.warning("kafka_probe_failed")
                    self.up = False
        finally:
            await self.close()

    async def _start_publisher(self) -> Publisher:
        publisher = self._factory()
        try:
            await publisher.start()
            # The first send to a topic Kafka has to auto-create can outlast the
            # enqueue bound; create them before calling ourselves ready.
            await ensure_topics(self._settings, (topics.RAW, topics.FETCH, topics.OUTCOMES))
        except BaseException:
            await publisher.stop()
            raise
        return publisher

    async def close(self) -> None:
        """Flush what is buffered and stop the producer (bounded)."""
        self.up = False
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.stop()
