"""Memory per service: resident set size at rest and under load.

``python -m bench.memory`` (or ``make bench``) starts a stack of its own
(``LEADWIRE_STACK=bench-memory``) with the project's launcher, every service configured as
``make up`` runs it (the gateway with two worker processes), plus an email rule so the
notifier has work. It samples each service's RSS (the sum over its process group, so the
gateway counts its supervisor and workers) once a second: after 10 s at rest, then while
:mod:`bench.loadgen` sends 150 leads/s for 30 s (the maximum is reported), then again at
rest after the load. Kafka, Postgres and S3 are listed too, for scale. Figures only.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.loadgen import NO_EXTRAS, LoadGenerator
from bench.ports import free_ports
from bench.sinks import SmtpSink, smtp_env
from bench.stack import SERVICES, LaunchedStack, email_rule, form_webhook, running_stack, say
from infra import list_processes
from infra.processes import children_of, group_members

RATE = float(os.environ.get("LEADWIRE_BENCH_MEMORY_RATE", "150"))
LOAD_SECONDS = float(os.environ.get("LEADWIRE_BENCH_MEMORY_SECONDS", "30"))
REST_SECONDS = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")
INFRA_NOTES = {
    "kafka": "infra, for scale (heap capped at 512m)",
    "postgres": "infra, for scale: postmaster + backends (shared buffers counted in each)",
    "s3": "infra, for scale (versitygw)",
}


def rss_bytes(pid: int) -> int:
    """Resident bytes of one process (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def group_rss(pgid: int) -> int:
    """Resident bytes of a whole process group and the leader's direct children (a service
    and the processes it started; Postgres backends run in sessions of their own)."""
    return sum(rss_bytes(pid) for pid in set(group_members(pgid)) | set(children_of(pgid)))


def sample(stack: LaunchedStack) -> dict[str, int]:
    return {p.name: group_rss(p.pid) for p in list_processes(stack.stack)}


async def _watch(stack: LaunchedStack, seconds: float, peaks: dict[str, int]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, value in (await asyncio.to_thread(sample, stack)).items():
            peaks[name] = max(peaks.get(name, 0), value)
        await asyncio.sleep(1.0)


def _row(metric: str, value: float, note: str = "") -> dict[str, Any]:
    return {"benchmark": "memory", "metric": metric, "value": value, "unit": "MiB", "note": note}


async def run() -> list[dict[str, Any]]:
    smtp = SmtpSink(free_ports(1, 18890)[0])
    smtp.start()
    stack = LaunchedStack(
        "bench-memory",
        port_base=18800,
        extra_env={
            "LEADWIRE_INGEST_WORKERS": "2",
            "LEADWIRE_IP_RATE_PER_MINUTE": "0",
            "LEADWIRE_LOG_LEVEL": "WARNING",
            **smtp_env(smtp),
        },
    )
    rows: list[dict[str, Any]] = []
    try:
        async with running_stack(stack):
            target = await form_webhook(stack)
            await asyncio.to_thread(
                email_rule, stack.cli_env(), target.workspace, ["sales@example.com"]
            )
            await asyncio.sleep(REST_SECONDS)
            rest = await asyncio.to_thread(sample, stack)
            say(f"memory: at rest { ({k: round(v / 2**20) for k, v in rest.items()}) } MiB")
            peaks: dict[str, int] = defaultdict(int)
            gen = LoadGenerator(
                [target],
                rate=RATE,
                total=int(RATE * LOAD_SECONDS),
                seconds=LOAD_SECONDS,
                mix=NO_EXTRAS,
                seed=3,
                give_up_s=30.0,
            )
            watcher = asyncio.create_task(_watch(stack, LOAD_SECONDS + 5, peaks))
            await gen.run()
            await watcher
            await asyncio.sleep(REST_SECONDS)
            after = await asyncio.to_thread(sample, stack)
            acked = sum(1 for i in gen.items.values() if i.acked)
            for svc in SERVICES:
                rows.append(
                    _row(
                        f"{svc}: RSS at rest",
                        rest.get(svc, 0) / 2**20,
                        "2 worker processes + supervisor" if svc == "ingest" else "",
                    )
                )
                rows.append(
                    _row(
                        f"{svc}: RSS under load (max)",
                        peaks.get(svc, 0) / 2**20,
                        f"{RATE:g} leads/s for {LOAD_SECONDS:g} s ({acked} accepted)",
                    )
                )
                rows.append(_row(f"{svc}: RSS after the load", after.get(svc, 0) / 2**20))
            for infra_name in ("kafka", "postgres", "s3"):
                rows.append(
                    _row(
                        f"{infra_name}: RSS under load (max)",
                        peaks.get(infra_name, 0) / 2**20,
                        INFRA_NOTES[infra_name],
                    )
                )
    finally:
        smtp.stop()
    return rows


def main() -> int:
    rows = asyncio.run(run())
    for r in rows:
        print(f"{r['metric']:<36} {r['value']:>8.1f} {r['unit']}  {r['note']}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
