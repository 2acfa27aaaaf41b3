"""Processor scaling on the three-broker cluster: ``python -m bench scaling``.

A private stack with three Kafka nodes (every topic replicated 3 times, min.insync.replicas
2; acks=all) and Postgres (fsync on). For 1, 2 and 3 processor processes in one consumer
group: a backlog of leads on the raw topic (8 partitions), then the processors started,
leads/s from the first to the last commit (bench.processor.measure.pipeline, each run on a
database and topics of its own). Beside each figure, how busy the machine's cores were while
the leads were being processed (from /proc/stat, in the window of the commits): when they
are all busy, the processors, the three brokers and Postgres share too few cores and more
replicas cannot go faster here; the partitions (8) would allow 8.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.cpu import load_average
from bench.figures import caption, cell
from bench.processor.measure import pipeline
from infra import Stack

N = int(os.environ.get("LEADWIRE_BENCH_SCALING_N", "12000"))
REPLICAS = (1, 2, 3)
TABLE = "processor scaling on 3 brokers"


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class _Sampler:
    """The cores' busy share over time, sampled every ``interval_s`` (wall clock)."""

    interval_s: float = 0.5
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _every(self) -> None:
        while True:
            self.samples.append((time.time(), *_cpu_times()))
            await asyncio.sleep(self.interval_s)

    def __enter__(self) -> _Sampler:
        self._task = asyncio.get_running_loop().create_task(self._every())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def busy(self, start: float, end: float) -> float:
        """The share (0..1) of all cores busy between two wall-clock times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan")
        (_, b0, t0), (_, b1, t1) = inside[0], inside[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else float("nan")


async def _commit_window(url: str) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM min(processed_at)) AS a, "
            "extract(epoch FROM max(processed_at)) AS b FROM webhook_requests"
        )
    finally:
        await conn.close()
    return float(row["a"] or 0.0), float(row["b"] or 0.0)


async def _measure(env: dict[str, str], admin_url: str, replicas: int) -> dict[str, Any]:
    with _Sampler() as sampler:
        rate, note = await pipeline(env, admin_url, replicas, N)
    url = admin_url.rsplit("/", 1)[0] + f"/bench_pipeline_{replicas}"
    start, end = await _commit_window(url)
    return {"rate": rate, "note": note, "busy": sampler.busy(start, end)}


def _rows(results: dict[int, dict[str, Any]], cores: int) -> list[dict[str, Any]]:
    base = results[1]["rate"] or float("nan")
    rows: list[dict[str, Any]] = []
    for n, r in results.items():
        row = f"{n} processor{'s' if n > 1 else ''}"
        rows.append(cell("scaling", TABLE, row, "leads/s", r["rate"], "leads/s", r["note"]))
        rows.append(cell("scaling", TABLE, row, "x 1 processor", r["rate"] / base, "x"))
        rows.append(
            cell("scaling", TABLE, row, "cores busy", 100 * r["busy"], "%", f"of {cores} cores")
        )
    busiest = max(r["busy"] for r in results.values())
    limit = (
        f"CPU: {cores} cores {100 * busiest:.0f} % busy while the leads were processed (the "
        "processors, three Kafka brokers and Postgres share them); more replicas only split "
        "the same cores. The raw topic's 8 partitions would allow 8 processors"
        if busiest >= 0.85
        else f"not CPU ({100 * busiest:.0f} % of {cores} cores busy at most): Postgres commits "
        "(fsync on) and Kafka's acks=all round trips to two replicas bound each processor"
    )
    rows.append(caption("scaling", TABLE, f"What limits it on this machine: {limit}."))
    rows.append(
        caption(
            "scaling",
            TABLE,
            f"{N} leads per run on a backlog; 3 brokers, replication 3, min.insync.replicas 2; "
            "cores busy counts all work on the machine (other processes too); "
            f"load average {load_average()} at the end",
        )
    )
    return rows


async def run() -> list[dict[str, Any]]:
    stack = Stack.for_name(f"bench-scaling-{os.getpid() % 1000}", pg_fsync=True, kafka_brokers=3)
    await stack.start(components=["kafka", "postgres"], timeout_s=240)
    try:
        env = stack.settings_env()
        admin_url = env["LEADWIRE_DATABASE_URL"]
        results = {n: await _measure(env, admin_url, n) for n in REPLICAS}
    finally:
        with contextlib.suppress(Exception):
            await stack.destroy()
    return _rows(results, os.cpu_count() or 1)
