"""The notifier on the service skeleton: it waits for a dependency that is not there yet
(and a stop meanwhile is a clean exit), and a loop that ends on its own takes it down."""

from __future__ import annotations

import asyncio

import pytest

from services.notifier.dispatcher import Dispatcher
from services.notifier.service import run_notifier
from shared.service import ServiceCrashed
from shared.settings import CommonSettings
from tests.support.net import free_port
from tests.support.notifier import notifier_settings

pytestmark = pytest.mark.integration


async def test_it_waits_for_kafka_and_a_stop_meanwhile_is_a_clean_exit(
    settings: CommonSettings,
) -> None:
    s = notifier_settings(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_notifier(s, stop, ready=ready))
    await asyncio.sleep(2.0)
    assert not task.done() and not ready.is_set()  # still waiting, not crashed
    stop.set()
    await asyncio.wait_for(task, 20)  # returns, raises nothing


async def test_a_loop_that_ends_takes_the_notifier_down(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Dispatcher) -> None:
        raise RuntimeError("the dispatcher broke")

    monkeypatch.setattr(Dispatcher, "run", broken)
    stop = asyncio.Event()
    with pytest.raises(ServiceCrashed) as crashed:
        await asyncio.wait_for(run_notifier(notifier_settings(settings), stop), 60)
    assert isinstance(crashed.value.__cause__, RuntimeError)
