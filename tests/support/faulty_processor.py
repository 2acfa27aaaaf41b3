"""``python -m tests.support.faulty_processor``: the processor as ``python -m
services.processor`` runs it, with test faults passed in as hooks (production code has
none). ``TEST_PROCESSOR_FAULTS`` (read here, in test code) names them, comma-separated:

- ``crash_after_commit``: exit with status 137 (as a ``kill -9``) right after the first
  commit that stored something, before publishing its outcomes (D8);
- ``hold_ms=N``: hold every batch N ms inside its transaction, locks taken (a slow
  handler, D3).
"""

from __future__ import annotations

import asyncio
import os

from services.processor.handlers import Hooks
from services.processor.outcomes import Finished
from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared.logs import configure_logging, get_logger
from shared.runtime import run

log = get_logger(__name__)

FAULTS_ENV = "TEST_PROCESSOR_FAULTS"


def crash(_finished: list[Finished]) -> None:
    log.warning("fault_crash_after_commit")
    os._exit(137)


def hooks_from(spec: str) -> Hooks:
    faults: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        faults[name] = value
    hold_s = int(faults.get("hold_ms") or 0) / 1000

    async def hold() -> None:
        await asyncio.sleep(hold_s)

    return Hooks(
        after_commit=crash if "crash_after_commit" in faults else None,
        in_transaction=hold if hold_s else None,
    )


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("processor", level=settings.log_level, fmt=settings.log_format)
    hooks = hooks_from(os.environ.get(FAULTS_ENV, ""))

    async def _main(stop: asyncio.Event) -> None:
        await run_processor(settings, stop, hooks=hooks)

    run(_main)


if __name__ == "__main__":
    main()
