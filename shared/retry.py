"""Waiting for dependencies and doing periodic work, written once.

- :func:`retry_until` awaits an attempt with backoff until it succeeds, for the errors that
  mean "a dependency is not reachable yet"; a stop during the wait raises
  :class:`Stopped`. Every service's start-up (Postgres, Kafka, topics, buckets) uses it.
- :func:`every` runs upkeep on an interval until a stop; a failed round is logged and the
  next one retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaError

from shared.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

#: Errors that mean "a dependency is not reachable yet": retried during start-up.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    KafkaError,
)


class Stopped(Exception):
    """``stop`` was set before the attempt succeeded."""


async def retry_until(
    stop: asyncio.Event,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...] = DEPENDENCY_ERRORS,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> T:
    """Await ``attempt()`` until it succeeds and return its result; back off between
    tries (``first_delay_s`` doubling up to ``max_delay_s``). Raises :class:`Stopped` if
    ``stop`` is set before it succeeds; errors outside ``retry_on`` propagate."""
    delay = first_delay_s
    tries = 0
    while True:
        if stop.is_set():
            raise Stopped(what)
        tries += 1
        try:
            return await attempt()
        except retry_on as exc:
            if stop.is_set():
                raise Stopped(what) from exc
            log.warning("dependency_unavailable", what=what, attempt=tries, error=_name(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_delay_s)


async def every(
    interval_s: float,
    work: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    *,
    name: str,
    first_delay_s: float = 0.0,
) -> None:
    """Run ``work`` every ``interval_s`` until ``stop``; a failure is logged and the next
    round retries (periodic upkeep must never take the service down)."""
    if first_delay_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), first_delay_s)
    while not stop.is_set():
        try:
            await work()
        except Exception as exc:  # upkeep; the next round retries
            log.warning("periodic_task_failed", task=name, error=_name(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def _name(exc: BaseException) -> str:
    return type(exc).__name__
