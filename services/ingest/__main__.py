"""``python -m services.ingest``: the gateway on ``LEADWIRE_INGEST_PORT``.

With ``LEADWIRE_INGEST_WORKERS`` > 1 (default: one per core) this process supervises that
many worker processes serving the same port (SO_REUSEPORT; the kernel spreads
connections): it restarts a worker that dies, forwards SIGTERM/SIGINT, and exits when
they have exited. With 1 worker the gateway runs in this process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from services.ingest.app import create_app, serve, tune_gc
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging, get_logger
from shared.runtime import run

log = get_logger("services.ingest")

WORKER_FLAG = "--worker"


def run_worker(settings: IngestSettings, workers: int) -> None:
    # With several workers, PROMETHEUS_MULTIPROC_DIR (set by the supervisor before this
    # process imported anything) makes shared.http's /metrics add up every worker.
    async def main(stop: asyncio.Event) -> None:
        app = create_app(settings, workers=workers)
        runner = await serve(
            app,
            settings.http_host,
            settings.ingest_port,
            reuse_port=workers > 1,
            ready_wait_s=settings.startup_ready_wait_s,
        )
        tune_gc()
        log.info(
            "ingest_listening", host=settings.http_host, port=settings.ingest_port, pid=os.getpid()
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    run(main)


def supervise(settings: IngestSettings, workers: int) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="leadwire-ingest-metrics-")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "LEADWIRE_INGEST_WORKERS": str(workers),
    }
    command = [sys.executable, "-m", "services.ingest", WORKER_FLAG]
    stopping = False

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    children = [spawn() for _ in range(workers)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ingest_supervising", workers=workers, port=settings.ingest_port)
    restarts: list[float] = []
    code = 0
    try:
        while True:
            alive = [c for c in children if c.poll() is None]
            if stopping and not alive:
                break
            if not stopping:
                for i, child in enumerate(children):
                    if child.poll() is None:
                        continue
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(child.pid, metrics_dir)
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < 30] + [now]
                    if len(restarts) > 3 * workers:
                        log.error("ingest_workers_crash_looping", exit_code=child.returncode)
                        code = 1
                        on_signal(signal.SIGTERM, None)
                        break
                    log.warning("ingest_worker_restarted", exit_code=child.returncode)
                    children[i] = spawn()
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.returncode not in (0, -signal.SIGTERM):
                code = code or 1
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("ingest_stopped", exit_code=code)
    return code


def main() -> int:
    settings = IngestSettings()
    configure_logging("ingest", level=settings.log_level, fmt=settings.log_format)
    workers = settings.workers()
    if WORKER_FLAG in sys.argv[1:] or workers == 1:
        run_worker(settings, workers)
        return 0
    return supervise(settings, workers)


if __name__ == "__main__":
    sys.exit(main())
