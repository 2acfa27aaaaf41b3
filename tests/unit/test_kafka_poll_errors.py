"""A poll that raises what aiokafka's background group tasks died of does not end the
consumer: the runner asks the member to rejoin (which restarts those tasks) and polls on.
Seen in the three-broker fault test: the notifier's heartbeat task wrote to a connection
uvloop had closed under a controller failover (RuntimeError), its error came back from
getmany, and the service stopped."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator

from shared.kafka import ConsumerRunner, Publisher
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


class _Coordinator:
    def __init__(self) -> None:
        self.rejoins = 0

    def request_rejoin(self) -> None:
        self.rejoins += 1


class _Consumer:
    """getmany raises each of ``errors`` in turn, then answers one record."""

    def __init__(self, *errors: BaseException) -> None:
        self._errors = list(errors)
        self._coordinator = _Coordinator()

    async def getmany(self, **_kw: Any) -> dict[Any, list[Any]]:
        if self._errors:
            raise self._errors.pop(0)
        record = SimpleNamespace(topic="t", partition=0, offset=7, value=b"{}")
        return {("t", 0): [record]}


async def _handler(_messages: Any) -> None:
    return None


async def test_a_background_task_error_from_getmany_rejoins_and_polls_on() -> None:
    settings = CommonSettings(kafka_bootstrap="127.0.0.1:1")
    publisher = Publisher(settings)
    runner: ConsumerRunner[bytes] = ConsumerRunner(
        settings,
        topics=["outcomes"],
        group_id="g",
        decode=bytes,
        handler=_handler,
        publisher=publisher,
    )
    real = runner.consumer
    fake = _Consumer(RuntimeError("unable to perform operation on <TCPTransport closed=True>"))
    runner._consumer = fake
    try:
        assert await runner._poll() == []  # the error: logged, a rejoin asked for
        assert fake._coordinator.rejoins == 1
        assert [r.offset for r in await runner._poll()] == [7]  # and the next poll goes on
    finally:
        await real._client.close()
        await publisher.producer.client.close()


async def test_the_aiokafka_parts_the_rejoin_relies_on_are_there() -> None:
    """A renamed attribute fails here, not silently when a broker fails over."""
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", group_id="g")
    assert hasattr(consumer, "_coordinator")
    await consumer.stop()
    assert callable(GroupCoordinator.request_rejoin)
    # The coordination loop rejoins when asked (and then restarts its heartbeat task).
    source = inspect.getsource(GroupCoordinator)
    assert "self.need_rejoin(subscription)" in source
    assert "self._start_heartbeat_task()" in source
