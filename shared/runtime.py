"""Process entry helpers: uvloop, a stop event set by SIGTERM or SIGINT, a service's whole
entry point (:func:`run_service`), and the refusal to start on unsafe settings
(:func:`refuse_unsafe`)."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
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

# sysexits' EX_CONFIG: a supervisor can tell "fix the configuration" from a crash.
EXIT_UNSAFE_SETTINGS = 78


def refuse_unsafe(name: str, settings: CommonSettings) -> None:
    """Exit (status 78) with one message naming every problem of ``settings``
    (:meth:`~shared.settings.CommonSettings.problems`), before anything starts."""
    problems = settings.problems()
    if not problems:
        return
    mode = " (LEADWIRE_ENV=production)" if settings.production else ""
    lines = [f"leadwire {name} refuses to start{mode}:"]
    lines += [f"  - {p}" for p in problems]
    lines.append("See docs/security.md (the production checklist).")
    print("\n".join(lines), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_UNSAFE_SETTINGS)


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


def tune_gc() -> None:
    """Fewer, cheaper collections: move everything alive at startup (modules, schemas,
    compiled mappings) out of the collector's view, and collect the young generation less
    often. A request or a message allocates few cycles; collections over the long-lived
    objects were the main source of the gateway's tail latency under load, and cost every
    consumer CPU per message."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def run_service(
    name: str, settings: S, service: Callable[[S, asyncio.Event], Awaitable[None]]
) -> None:
    """A service's ``__main__``: refuse unsafe settings, logging as ``settings`` say, then
    ``service(settings, stop)`` until SIGTERM."""
    refuse_unsafe(name, settings)
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)
    tune_gc()
    run(lambda stop: service(settings, stop))
