"""``python -m services.processor``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.processor.service import run_processor
from services.processor.settings import ProcessorSettings
from shared.runtime import run_service


def main() -> None:
    run_service("processor", ProcessorSettings(), run_processor)


if __name__ == "__main__":
    main()
