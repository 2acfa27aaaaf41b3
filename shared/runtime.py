"""Process entry helpers: uvloop, a stop event set by SIGTERM or SIGINT, and a service's
whole entry point (:func:`run_service`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TypeVar

from shared.logs import configure_logging
from shared.settings import CommonSettings

uvloop: ModuleType | None
try:  # uvloop is optional at run time; the event loop is the stdlib one without it.
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

S = TypeVar("S", bound=CommonSettings)


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; ``stop`` is set on SIGTERM/SIGINT so main can drain and return."""

    async def _wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    if uvloop is not None:
        uvloop.run(_wrapper())
    else:
        asyncio.run(_wrapper())


def run_service(
    name: str, settings: S, service: Callable[[S, asyncio.Event], Awaitable[None]]
) -> None:
    """A service's ``__main__``: logging as ``settings`` say, then ``service(settings,
    stop)`` until SIGTERM."""
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)
    run(lambda stop: service(settings, stop))
