"""``python -m services.analytics``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.analytics.service import run_analytics
from services.analytics.settings import AnalyticsSettings
from shared.runtime import run_service


def main() -> None:
    run_service("analytics", AnalyticsSettings(), run_analytics)


if __name__ == "__main__":
    main()
