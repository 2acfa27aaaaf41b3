"""The services under test, as processes of their own: started with the benchmark's
settings, awaited until ready, stopped with SIGTERM; and the wait for their commits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import IO

from bench.stack import ROOT, wait_ready
from shared.db import connect


def service_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **base,
        "LEADWIRE_LOG_LEVEL": "WARNING",
        "LEADWIRE_LOG_FORMAT": "json",
        **extra,
    }


def _spawn(name: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log = open(f"/tmp/leadwire-bench-{name}-{os.getpid()}.log", "ab")  # closed by service()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


@contextlib.asynccontextmanager
async def service(
    name: str, env: dict[str, str], ready_url: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``services.<name>`` running (ready) for the block, stopped after it."""
    proc, log = _spawn(name, env)

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode} (log {log.name})")

    try:
        await wait_ready(
            ready_url, what=f"{name} (log {log.name})", deadline_s=60, interval_s=0.1, check=alive
        )
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


async def committed(url: str, n: int, deadline_s: float) -> tuple[int, float]:
    """Wait until ``n`` requests are stored; (count, span in seconds of their processed_at)."""
    conn = await connect(url)
    try:
        end = time.monotonic() + deadline_s
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM webhook_requests WHERE status = 'processed'"
            )
            if done >= n or time.monotonic() > end:
                break
            await asyncio.sleep(0.2)
        span = await conn.fetchval(
            "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM webhook_requests"
        )
        return int(done), float(span or 0.0)
    finally:
        await conn.close()
