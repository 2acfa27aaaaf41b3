"""``python -m services.archiver``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

import asyncio

from services.archiver.service import run_archiver
from services.archiver.settings import ArchiverSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = ArchiverSettings()
    configure_logging("archiver", level=settings.log_level, fmt=settings.log_format)

    async def _main(stop: asyncio.Event) -> None:
        await run_archiver(settings, stop)

    run(_main)


if __name__ == "__main__":
    main()
