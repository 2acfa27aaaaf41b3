"""``python -m services.analytics``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.analytics.service import run_analytics
from services.analytics.settings import AnalyticsSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = AnalyticsSettings()
    configure_logging("analytics", level=settings.log_level, fmt=settings.log_format)
    run(lambda stop: run_analytics(settings, stop))


if __name__ == "__main__":
    main()
