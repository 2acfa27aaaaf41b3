"""``python -m services.archiver``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.archiver.service import run_archiver
from services.archiver.settings import ArchiverSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = ArchiverSettings()
    configure_logging("archiver", level=settings.log_level, fmt=settings.log_format)
    run(lambda stop: run_archiver(settings, stop))


if __name__ == "__main__":
    main()
