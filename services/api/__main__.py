"""``python -m services.api``: settings -> logging -> run until SIGTERM."""

from __future__ import annotations

from services.api.service import run_api
from services.api.settings import ApiSettings
from shared.runtime import run_service


def main() -> None:
    run_service("api", ApiSettings(), run_api)


if __name__ == "__main__":
    main()
