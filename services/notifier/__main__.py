"""``python -m services.notifier``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.notifier.service import run_notifier
from services.notifier.settings import NotifierSettings
from shared.runtime import run_service


def main() -> None:
    run_service("notifier", NotifierSettings(), run_notifier)


if __name__ == "__main__":
    main()
