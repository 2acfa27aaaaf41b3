"""Process entry helpers: uvloop, and a stop event set by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from types import ModuleType

uvloop: ModuleType | None
try:  # uvloop is optional at run time; the event loop is the stdlib one without it.
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


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
