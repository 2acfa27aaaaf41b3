"""``python -m services.notifier``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.notifier.service import run_notifier
from services.notifier.settings import NotifierSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = NotifierSettings()
    configure_logging("notifier", level=settings.log_level, fmt=settings.log_format)
    run(lambda stop: run_notifier(settings, stop))


if __name__ == "__main__":
    main()
