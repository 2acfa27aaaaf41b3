"""``python -m tests.support.crashing_processor``: the processor as ``python -m
services.processor`` runs it, except that it exits (status 137, as a ``kill -9``) right
after its first commit that stored something, before publishing the outcomes: a crash
between commit and publish (D8), in a real process. The fault is this test module's
``after_commit`` hook; production code has none."""

from __future__ import annotations

import asyncio
import os

from services.processor.outcomes import Finished
from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared.logs import configure_logging, get_logger
from shared.runtime import run

log = get_logger(__name__)


def crash(_finished: list[Finished]) -> None:
    log.warning("fault_crash_after_commit")
    os._exit(137)


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("processor", level=settings.log_level, fmt=settings.log_format)

    async def _main(stop: asyncio.Event) -> None:
        await run_processor(settings, stop, after_commit=crash)

    run(_main)


if __name__ == "__main__":
    main()
