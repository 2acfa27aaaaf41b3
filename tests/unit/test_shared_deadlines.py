"""Bounds swept together (shared.deadlines), and the publish they bound: an overdue await
raises TimeoutError like asyncio.timeout's, an outside cancellation stays a cancellation,
and nothing is left armed once the awaits are done."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from shared.deadlines import Deadlines
from shared.kafka import KafkaUnavailable
from shared.kafka.producer import Publisher
from shared.settings import CommonSettings
from tests.support.polling import eventually

pytestmark = pytest.mark.unit


async def _bounded(deadlines: Deadlines, seconds: float, work: Any) -> Any:
    bound = deadlines.start(seconds)
    try:
        return await work
    except asyncio.CancelledError:
        bound.raise_if_fired()
        raise
    finally:
        bound.done()


async def test_an_await_past_its_bound_raises_timeout_about_on_time() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _bounded(deadlines, 0.05, asyncio.Event().wait())
    assert 0.05 <= time.monotonic() - started < 1.0
    assert deadlines.pending() == 0


async def test_an_await_within_its_bound_is_answered_and_leaves_nothing_armed() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    assert await _bounded(deadlines, 5.0, asyncio.sleep(0, "ok")) == "ok"
    assert deadlines.pending() == 0

    # The sweep stops once no bound waits (an idle process arms no timer).
    async def armed() -> bool:
        return deadlines._sweep_handle is not None

    await eventually(armed, until=lambda a: not a, deadline_s=2, interval_s=0.01, what="disarmed")
    assert deadlines._queues == {}  # nothing kept for a length no bound waits on


async def test_bounds_of_different_lengths_each_fire_at_their_own() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    long = asyncio.ensure_future(_bounded(deadlines, 5.0, asyncio.sleep(0.3, "long")))
    with pytest.raises(TimeoutError):
        await _bounded(deadlines, 0.05, asyncio.Event().wait())
    assert not long.done()  # the short bound firing left the long one alone
    assert await long == "long"


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    task = asyncio.ensure_future(_bounded(deadlines, 5.0, asyncio.Event().wait()))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.pending() == 0


async def test_a_bound_that_fires_while_the_task_is_also_cancelled_stays_cancelled() -> None:
    deadlines = Deadlines(resolution_s=10.0)  # swept by hand below
    task = asyncio.ensure_future(_bounded(deadlines, 0.0, asyncio.Event().wait()))
    await asyncio.sleep(0)  # the task waits, bounded
    task.cancel()  # from outside
    deadlines._sweep(asyncio.get_running_loop())  # and the bound fires too
    with pytest.raises(asyncio.CancelledError):
        await task


class _SilentProducer:
    """An aiokafka producer whose sends are never acknowledged."""

    def __init__(self) -> None:
        self._message_accumulator = SimpleNamespace(_linger_time=0.0)

    async def send(self, *_args: Any, **_kw: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


async def test_a_publish_never_acknowledged_is_refused_within_its_bound() -> None:
    publisher = Publisher(CommonSettings(kafka_bootstrap="127.0.0.1:1"))
    real = publisher.producer
    publisher._producer = _SilentProducer()
    try:
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="not acknowledged: TimeoutError"):
            await publisher.publish("t", b"{}", key="k", timeout=0.1)
        assert 0.1 <= time.monotonic() - started < 1.5
    finally:
        await real.stop()
