"""``python -m services.processor``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared.logs import configure_logging
from shared.runtime import run


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("processor", level=settings.log_level, fmt=settings.log_format)
    run(lambda stop: run_processor(settings, stop))


if __name__ == "__main__":
    main()
