"""The service skeleton: start-up waits, stop drains in phases, a crash is never silent."""

from __future__ import annotations

import asyncio

import pytest

from shared.kafka import position_of
from shared.retry import Stopped, every, retry_until
from shared.service import Service, ServiceCrashed
from tests.support.polling import eventually

pytestmark = pytest.mark.unit


async def test_retry_until_retries_transient_errors_and_returns_the_result() -> None:
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    result = await retry_until(asyncio.Event(), "thing", attempt, first_delay_s=0.001)
    assert (result, calls) == ("up", 3)


async def test_retry_until_raises_stopped_when_stop_is_set_while_waiting() -> None:
    stop = asyncio.Event()

    async def attempt() -> None:
        stop.set()
        raise TimeoutError

    with pytest.raises(Stopped):
        await retry_until(stop, "thing", attempt)


async def test_retry_until_lets_other_errors_through() -> None:
    async def attempt() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await retry_until(asyncio.Event(), "thing", attempt)


async def test_every_survives_a_failing_round() -> None:
    stop = asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("first round fails")
        if rounds == 3:
            stop.set()

    await asyncio.wait_for(every(0.001, work, stop, name="upkeep"), 5)
    assert rounds == 3


async def test_stop_drains_tasks_phase_by_phase_then_cleans_up_in_reverse() -> None:
    stop = asyncio.Event()
    order: list[str] = []
    consumer_stop = asyncio.Event()
    sender_stop = asyncio.Event()

    async def loop(name: str, until: asyncio.Event) -> None:
        await until.wait()
        order.append(f"{name} drained")

    async with Service("demo", stop) as svc:
        svc.cleanup(lambda: order.append("pool closed"))
        svc.cleanup(lambda: order.append("http closed"))
        svc.task("sender", loop("sender", sender_stop), on_stop=sender_stop.set, phase=1)
        svc.task("consumer", loop("consumer", consumer_stop), on_stop=consumer_stop.set)
        asyncio.get_running_loop().call_soon(stop.set)
        await svc.run()
    assert order == ["consumer drained", "sender drained", "http closed", "pool closed"]


async def test_a_task_that_ends_early_crashes_the_service_after_draining_the_rest() -> None:
    cleaned: list[str] = []

    async def broken() -> None:
        raise ValueError("handler bug")

    async def healthy() -> None:
        await asyncio.Event().wait()

    with pytest.raises(ServiceCrashed) as info:
        async with Service("demo", asyncio.Event()) as svc:
            svc.cleanup(lambda: cleaned.append("closed"))
            other = svc.task("healthy", healthy())
            svc.task("broken", broken())
            await svc.run()
    assert isinstance(info.value.__cause__, ValueError)
    assert other.cancelled()
    assert cleaned == ["closed"]


async def test_a_stop_during_start_up_is_a_clean_exit() -> None:
    stop = asyncio.Event()
    stop.set()
    cleaned: list[str] = []
    async with Service("demo", stop) as svc:
        svc.cleanup(lambda: cleaned.append("closed"))
        await svc.retry_until("postgres", _never)
        raise AssertionError("not reached")
    assert cleaned == ["closed"]


async def _never() -> None:
    raise OSError("down")


async def test_periodic_work_ends_when_the_service_drains() -> None:
    stop = asyncio.Event()
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(1)

    async with Service("demo", stop) as svc:
        svc.every("upkeep", 0.001, work)
        runner = asyncio.create_task(svc.run())
        await eventually(lambda: _value(len(rounds)), until=lambda n: n >= 3, deadline_s=5)
        stop.set()
        await asyncio.wait_for(runner, 5)


async def _value(n: int) -> int:
    return n


def test_position_of_names_one_partition_and_its_offsets() -> None:
    records = [_Rec("raw", 2, 10), _Rec("raw", 2, 12)]
    assert position_of(records) == {  # type: ignore[arg-type]
        "topic": "raw",
        "partition": 2,
        "offset": 10,
        "last_offset": 12,
    }
    assert position_of([_Rec("raw", 0, 5), _Rec("raw", 3, 1)]) == {  # type: ignore[arg-type]
        "topic": "raw",
        "offsets": "0:5-5,3:1-1",
    }


class _Rec:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


async def test_a_task_that_ends_because_of_the_stop_is_not_a_crash() -> None:
    stop = asyncio.Event()

    async def ends_on_stop() -> None:
        await stop.wait()

    async with Service("demo", stop) as svc:
        svc.task("loop", ends_on_stop())
        asyncio.get_running_loop().call_soon(stop.set)
        await svc.run()  # no ServiceCrashed
