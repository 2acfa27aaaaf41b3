"""``python -m services.archiver``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.archiver.service import run_archiver
from services.archiver.settings import ArchiverSettings
from shared.runtime import run_service


def main() -> None:
    run_service("archiver", ArchiverSettings(), run_archiver)


if __name__ == "__main__":
    main()
