"""``python -m tests.support.faulty_archiver``: the archiver as ``python -m
services.archiver`` runs it, with test faults passed in as hooks (production code has
none). ``TEST_ARCHIVER_FAULTS`` (read here, in test code) names one:

- ``crash_after_upload=N``: exit with status 137 (as a ``kill -9``) right after the Nth
  flush stored its segments, before their index rows are written;
- ``crash_after_index=N``: exit with status 137 right after the Nth flush wrote its index
  rows, before the offsets are committed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from services.archiver.handlers import Hooks
from services.archiver.service import run_archiver
from services.archiver.settings import ArchiverSettings
from shared.logs import configure_logging, get_logger
from shared.runtime import run

log = get_logger(__name__)

FAULTS_ENV = "TEST_ARCHIVER_FAULTS"


def crash_on(n: int, where: str) -> Callable[[list[str]], None]:
    calls = 0

    def hook(keys: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            log.warning(f"fault_{where}", segments=keys)
            os._exit(137)

    return hook


def hooks_from(spec: str) -> Hooks:
    name, _, value = spec.strip().partition("=")
    n = int(value or 1)
    if name == "crash_after_upload":
        return Hooks(after_upload=crash_on(n, name))
    if name == "crash_after_index":
        return Hooks(after_index=crash_on(n, name))
    return Hooks()


def main() -> None:
    settings = ArchiverSettings()
    configure_logging("archiver", level=settings.log_level, fmt=settings.log_format)
    hooks = hooks_from(os.environ.get(FAULTS_ENV, ""))

    async def _main(stop: asyncio.Event) -> None:
        await run_archiver(settings, stop, hooks=hooks)

    run(_main)


if __name__ == "__main__":
    main()
