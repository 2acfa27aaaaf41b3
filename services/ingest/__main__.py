"""``python -m services.ingest``: the gateway on ``LEADWIRE_INGEST_PORT``.

With ``LEADWIRE_INGEST_WORKERS`` > 1 (default: one per core) this process supervises that
many worker processes on the same port (supervisor.py); with 1 the gateway runs here.
"""

from __future__ import annotations

import sys

from services.ingest.service import run_ingest
from services.ingest.settings import IngestSettings
from services.ingest.supervisor import WORKER_FLAG, supervise
from shared.logs import configure_logging
from shared.runtime import refuse_unsafe, run


def main() -> int:
    settings = IngestSettings()
    refuse_unsafe("ingest", settings)
    configure_logging("ingest", level=settings.log_level, fmt=settings.log_format)
    workers = settings.workers()
    if workers > 1 and WORKER_FLAG not in sys.argv[1:]:
        return supervise(settings, workers)
    run(lambda stop: run_ingest(settings, stop, workers=workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
