"""Several gateway processes on one port: the supervisor of ``python -m services.ingest``
when ``LEADWIRE_INGEST_WORKERS`` > 1.

It starts that many worker processes (``python -m services.ingest --worker``) serving the
same port with SO_REUSEPORT (the kernel spreads connections over them), restarts a worker
that dies (giving up, exit 1, when they crash-loop: more than 3 restarts per worker in
30 s), forwards SIGTERM/SIGINT, and exits when they have exited: 0 when all drained
cleanly. The workers write their metrics to one ``PROMETHEUS_MULTIPROC_DIR``, so any
worker's ``/metrics`` adds all of them up (set before the workers import anything).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from services.ingest.settings import IngestSettings
from shared.logs import get_logger

log = get_logger("services.ingest")

WORKER_FLAG = "--worker"
RESTART_WINDOW_S = 30.0
STOP_GRACE_S = 30.0


def supervise(settings: IngestSettings, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM/SIGINT; the exit code."""
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
    code = 0
    try:
        restarts: list[float] = []
        while not (stopping and all(c.poll() is not None for c in children)):
            if not stopping and not _restart_dead(children, spawn, restarts, metrics_dir):
                code = 1
                on_signal(signal.SIGTERM, None)
            time.sleep(0.2)
        if not _reap(children):
            code = code or 1
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("ingest_stopped", exit_code=code)
    return code


def _restart_dead(
    children: list[subprocess.Popen[bytes]],
    spawn: Callable[[], subprocess.Popen[bytes]],
    restarts: list[float],
    metrics_dir: str,
) -> bool:
    """Replace the workers that exited; False when they crash-loop (stop all)."""
    from prometheus_client import multiprocess

    for i, child in enumerate(children):
        if child.poll() is None:
            continue
        multiprocess.mark_process_dead(child.pid, metrics_dir)
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(restarts) > 3 * len(children):
            log.error("ingest_workers_crash_looping", exit_code=child.returncode)
            return False
        log.warning("ingest_worker_restarted", exit_code=child.returncode)
        children[i] = spawn()
    return True


def _reap(children: list[subprocess.Popen[bytes]]) -> bool:
    """Wait for the workers (killing those past the grace); True if all exited cleanly."""
    deadline = time.monotonic() + STOP_GRACE_S
    clean = True
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.returncode not in (0, -signal.SIGTERM):
            clean = False
    return clean
