"""``python -m services.analytics``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

import asyncio

from services.analytics.service import run_analytics
from services.analytics.settings import AnalyticsSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = AnalyticsSettings()
    configure_logging("analytics", level=settings.log_level, fmt=settings.log_format)

    async def _main(stop: asyncio.Event) -> None:
        await run_analytics(settings, stop)

    run(_main)


if __name__ == "__main__":
    main()
