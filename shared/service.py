"""One skeleton for every service: start -> wait for stop or a crash -> drain -> clean up.

Every service's ``service.py`` builds its parts inside ``async with Service(name, stop)``
and then awaits :meth:`Service.run`::

    async with Service("processor", stop, ready=ready) as svc:
        pool = await svc.retry_until("postgres", lambda: open_pool(settings))
        svc.cleanup(pool.close)
        publisher = await svc.publisher(settings)
        runner = ConsumerRunner(...)
        svc.task("consumer", runner.run(), on_stop=runner.stop)
        svc.every("prune", 3600, prune)
        await svc.serve_ops(settings, checks={...})   # /healthz /readyz /metrics, ops port
        await svc.run()

What it promises:

- **Start-up waits, it does not crash-loop.** :meth:`Service.retry_until` (and the
  module-level :func:`retry_until`) awaits an attempt with backoff until it succeeds, for
  the errors that mean "a dependency is not there yet" (connection refused, timeouts,
  Postgres and Kafka errors); a stop during the wait raises :class:`Stopped`, which the
  context manager treats as a clean exit.
- **Stop drains in order.** On ``stop`` (SIGTERM) the tasks are stopped phase by phase
  (``phase=0`` first: consumers finish and commit the batch in hand; then later phases),
  periodic work ends, and then every cleanup registered runs in reverse order (HTTP,
  producer, pool), each bounded.
- **Trouble is told.** :meth:`Service.watch_health` publishes one system-health alert
  when a readiness check has failed for longer than a bound, and one when it recovers.
- **A crash is never silent.** A task that ends before ``stop`` (returns or raises) is
  logged, the rest drain as on a stop, and :meth:`run` raises :class:`ServiceCrashed`
  so the process exits non-zero and its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from shared import topics
from shared.db import create_pool
from shared.events import SystemHealthAlert
from shared.health import HealthMonitor
from shared.http import ReadyCheck, ops_app, serve
from shared.kafka import KafkaUnavailable, Publisher, ensure_topics
from shared.logs import get_logger
from shared.retry import DEPENDENCY_ERRORS, Stopped, every, retry_until
from shared.settings import CommonSettings

log = get_logger(__name__)

T = TypeVar("T")

#: Errors that mean "a dependency is not reachable yet": retried during start-up.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (*DEPENDENCY_ERRORS, KafkaUnavailable)


class ServiceCrashed(RuntimeError):
    """A task of the service ended before it was asked to stop."""


@dataclass
class _Task:
    name: str
    task: asyncio.Task[Any]
    on_stop: Callable[[], object] | None
    phase: int
    critical: bool


class Service:
    """The running service: its tasks, its cleanups, its stop. See the module docstring."""

    def __init__(
        self,
        name: str,
        stop: asyncio.Event,
        *,
        ready: asyncio.Event | None = None,
        cleanup_timeout_s: float = 15.0,
    ) -> None:
        self.name = name
        self.stop = stop
        self._ready = ready
        self._cleanup_timeout_s = cleanup_timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[_Task] = []
        # Set when draining starts: ends periodic work and anything else that waits on it.
        self.draining = asyncio.Event()

    async def __aenter__(self) -> Service:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            await self._drain()
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)
            log.info("service_stopped", service=self.name)
        # A stop during start-up is a clean exit, not an error.
        return isinstance(exc, Stopped)

    # --- building -----------------------------------------------------------------------

    async def retry_until(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    ) -> T:
        """:func:`retry_until` bound to this service's ``stop``."""
        return await retry_until(self.stop, what, attempt, retry_on=retry_on)

    def cleanup(self, close: Callable[[], Awaitable[object] | object]) -> None:
        """Run ``close()`` at the end (last registered, first run), bounded in time."""

        async def _close() -> None:
            try:
                result = close()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self._cleanup_timeout_s)
            except Exception as exc:  # one failing cleanup must not skip the others
                log.warning("cleanup_failed", service=self.name, error=_name(exc))

        self._stack.push_async_callback(_close)

    async def enter(self, resource: contextlib.AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager for the service's lifetime."""
        return await self._stack.enter_async_context(resource)

    def task(
        self,
        name: str,
        coro: Coroutine[Any, Any, object],
        *,
        on_stop: Callable[[], object] | None = None,
        phase: int = 0,
        critical: bool = True,
    ) -> asyncio.Task[Any]:
        """Run ``coro`` until stop. At drain, tasks of the lowest ``phase`` go first:
        ``on_stop()`` asks the task to finish (else it is cancelled) and it is awaited.
        A ``critical`` task that ends before stop makes the service crash."""
        task = asyncio.create_task(coro, name=f"{self.name}-{name}")
        self._tasks.append(_Task(name, task, on_stop, phase, critical))
        return task

    def every(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[object]],
        *,
        first_delay_s: float = 0.0,
    ) -> None:
        """Periodic background work until the service drains (see :func:`every`)."""
        self.task(
            name,
            every(interval_s, work, self.draining, name=name, first_delay_s=first_delay_s),
            on_stop=self.draining.set,
            phase=100,
            critical=False,
        )

    async def pool(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        stateless: bool = False,
        server_settings: Mapping[str, str] | None = None,
    ) -> asyncpg.Pool:
        """An asyncpg pool (waiting for Postgres to answer), closed at the end."""

        async def _open() -> asyncpg.Pool:
            return await create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                stateless=stateless,
                server_settings=server_settings,
            )

        pool = await self.retry_until("postgres", _open)
        self.cleanup(pool.close)
        return pool

    async def publisher(self, settings: CommonSettings, *, client_id: str) -> Publisher:
        """A started :class:`Publisher` (waiting for Kafka to answer), flushed at the end."""

        async def _start() -> Publisher:
            publisher = Publisher(settings, client_id=client_id)
            await publisher.start()  # stops itself when it fails
            return publisher

        publisher = await self.retry_until("kafka", _start)
        self.cleanup(publisher.stop)
        return publisher

    async def topics(self, settings: CommonSettings, names: Iterable[str]) -> None:
        """Create the topics if missing (waiting for Kafka), leaders elected."""
        wanted = list(names)
        await self.retry_until("kafka topics", lambda: ensure_topics(settings, wanted))

    def watch_health(
        self,
        settings: CommonSettings,
        publisher: Publisher,
        checks: Mapping[str, ReadyCheck],
    ) -> HealthMonitor:
        """Publish a system-health alert when one of ``checks`` (the readiness checks) has
        failed for longer than ``health_alert_after_s``, and when it passes again (see
        :mod:`shared.health`); evaluated every ``health_check_interval_s`` until the
        service drains. Returns the monitor, to watch checks of the service's own."""

        created: list[bool] = []

        async def publish(event: SystemHealthAlert) -> None:
            if not created:  # a service that does not use the alerts topic otherwise
                await ensure_topics(settings, [topics.ALERTS])
                created.append(True)
            await publisher.publish(topics.ALERTS, event, key=self.name)

        monitor = HealthMonitor(self.name, publish)
        for name, check in checks.items():
            monitor.watch(name, check, after_s=settings.health_alert_after_s)
        interval = settings.health_check_interval_s
        self.every("health", interval, monitor.tick, first_delay_s=interval)
        return monitor

    async def serve_ops(
        self,
        settings: CommonSettings,
        *,
        checks: Mapping[str, ReadyCheck] | None = None,
        reuse_port: bool = False,
        port: int | None = None,
    ) -> None:
        """Serve ``/healthz``, ``/readyz`` (``checks``) and ``/metrics`` on the service's
        ops listener (``ops_host``, ``port`` or else ``<name>_ops_port``) until the end.
        ``reuse_port``: several worker processes share it (the gateway's)."""
        port = port if port is not None else settings.ops_port(self.name)
        runner = await serve(
            ops_app(self.name, checks), settings.ops_host, port, reuse_port=reuse_port
        )
        self.cleanup(runner.cleanup)
        log.info("ops_listening", service=self.name, host=settings.ops_host, port=port)

    async def serve_public(self, app: web.Application, host: str, port: int) -> None:
        """Serve the service's public routes (``app``, without the ops routes) until the
        end."""
        runner = await serve(app, host, port)
        self.cleanup(runner.cleanup)

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for ``stop`` or for a critical task to end; then drain. Raises
        :class:`ServiceCrashed` if a task ended first."""
        log.info("service_started", service=self.name, tasks=[t.name for t in self._tasks])
        if self._ready is not None:
            self._ready.set()
        stopper = asyncio.create_task(self.stop.wait())
        watched = {t.task for t in self._tasks if t.critical}
        try:
            done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if stopper in done or self.stop.is_set():
            return  # a task that ended as the stop came is draining, not crashing
        crashed = [t for t in self._tasks if t.task in done]
        for t in crashed:
            error = t.task.exception() if not t.task.cancelled() else None
            log.error("service_task_ended", service=self.name, task=t.name, error=_name(error))
        await self._drain()
        first = crashed[0]
        cause = first.task.exception() if not first.task.cancelled() else None
        raise ServiceCrashed(f"{self.name}: task {first.name} ended") from cause

    async def _drain(self) -> None:
        self.draining.set()
        for phase in sorted({t.phase for t in self._tasks}):
            group = [t for t in self._tasks if t.phase == phase and not t.task.done()]
            for t in group:
                if t.on_stop is not None:
                    t.on_stop()
                else:
                    t.task.cancel()
            if group:
                await asyncio.gather(*(t.task for t in group), return_exceptions=True)
        self._tasks = [t for t in self._tasks if not t.task.done()]


def _name(exc: BaseException | None) -> str | None:
    return type(exc).__name__ if exc is not None else None
