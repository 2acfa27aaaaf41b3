"""End to end through the whole system, as ``make up`` runs it: leads/s, accept-to-committed
latency, and what a second processor replica adds.

``python -m bench.pipeline`` (or ``make bench``) starts a stack of its own
(``LEADWIRE_STACK=bench-pipeline``, Postgres with fsync on) with the project's launcher: all
five services (the notifier, analytics and archiver consume every outcome meanwhile), one
unsigned generic webhook; it sends with :mod:`bench.loadgen` from this process, prints its
figures and stops the stack. Figures only, never assertions: the machine is shared.

- ``paced``: 100 leads/s for 15 s, one processor: accept (the gateway's 202 arrives at the
  client) to committed (the processor's ``processed_at``, stamped just before its batch's
  commit, see :mod:`bench.commits`) p50/p95/p99, and committed leads/s;
- ``burst``: as many leads as the gateway takes (64 in flight) with two processors: leads/s
  from the first send to the last commit (end to end at saturation), and the gateway's
  intake rate alone;
- ``scaling``: a backlog of leads waits on the raw topic (processors stopped), then one,
  or two, processors drain it: committed leads/s (10th to 90th percentile commit, so start-up
  and the group's first rebalance stay out) and the ratio.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from bench.commits import Commits
from bench.figures import figure, percentile
from bench.loadgen import NO_EXTRAS, Item, LoadGenerator, Target
from bench.stack import EXTRA_PROCESSOR, LaunchedStack, form_webhook, running_stack, say
from infra.stack import stop_process

PACED_RATE = float(os.environ.get("LEADWIRE_BENCH_PIPELINE_RATE", "100"))
PACED_SECONDS = float(os.environ.get("LEADWIRE_BENCH_PIPELINE_SECONDS", "15"))
BURST_N = int(os.environ.get("LEADWIRE_BENCH_PIPELINE_BURST", "3000"))
BACKLOG_N = int(os.environ.get("LEADWIRE_BENCH_PIPELINE_BACKLOG", "6000"))
DEADLINE_S = 180.0


def _row(metric: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    return figure("pipeline", metric, value, unit, note)


async def _send(
    target: Target,
    *,
    rate: float,
    total: int,
    seconds: float,
    accepted: dict[str, float],
    in_flight: int = 64,
) -> tuple[LoadGenerator, float]:
    def on_ack(item: Item) -> None:
        if item.request_id:
            accepted[item.request_id] = time.monotonic()

    gen = LoadGenerator(
        [target],
        rate=rate,
        total=total,
        seconds=seconds,
        mix=NO_EXTRAS,
        seed=int(time.time()),
        max_in_flight=in_flight,
        on_ack=on_ack,
        give_up_s=30.0,
    )
    began = time.monotonic()
    await gen.run()
    return gen, time.monotonic() - began


def _ids(gen: LoadGenerator) -> set[str]:
    return {i.request_id for i in gen.items.values() if i.acked and i.request_id}


async def _paced(target: Target, commits: Commits) -> list[dict[str, Any]]:
    """Paced, one processor: accept -> committed latency and committed leads/s."""
    say(f"pipeline: paced {PACED_RATE:g}/s for {PACED_SECONDS:g} s, one processor")
    accepted: dict[str, float] = {}
    gen, _ = await _send(
        target,
        rate=PACED_RATE,
        total=int(PACED_RATE * PACED_SECONDS),
        seconds=PACED_SECONDS,
        accepted=accepted,
    )
    ids = _ids(gen)
    await commits.wait_for(ids, DEADLINE_S)
    lat = [(commits.at[r] - accepted[r]) * 1000 for r in ids if r in commits.at and r in accepted]
    done = [commits.at[r] for r in ids if r in commits.at]
    first = min(accepted.values()) if accepted else 0.0
    note = f"{len(lat)} leads, all five services running"
    return [
        _row("paced: accept->committed p50", percentile(lat, 0.50), "ms", note),
        _row("paced: accept->committed p95", percentile(lat, 0.95), "ms", note),
        _row("paced: accept->committed p99", percentile(lat, 0.99), "ms", note),
        _row(
            "paced: committed leads/s",
            len(done) / max(max(done) - first, 1e-9) if done else 0.0,
            "leads/s",
            f"offered {PACED_RATE:g}/s",
        ),
    ]


async def _burst(stack: LaunchedStack, target: Target, commits: Commits) -> list[dict[str, Any]]:
    """Burst, two processors: end to end at saturation, and the gateway's intake."""
    stack.start_service(EXTRA_PROCESSOR)
    await stack.wait_ready(EXTRA_PROCESSOR)
    say(f"pipeline: burst of {BURST_N} leads, two processors")
    accepted: dict[str, float] = {}
    started = time.monotonic()
    gen, send_s = await _send(target, rate=5000, total=BURST_N, seconds=120, accepted=accepted)
    ids = _ids(gen)
    ok = await commits.wait_for(ids, DEADLINE_S)
    last = max((commits.at[r] for r in ids if r in commits.at), default=started)
    return [
        _row(
            "burst: end to end leads/s",
            len(ids) / max(last - started, 1e-9),
            "leads/s",
            f"{len(ids)} leads, first send -> last commit, 2 processors"
            + ("" if ok else ", INCOMPLETE"),
        ),
        _row(
            "burst: gateway intake leads/s",
            len(ids) / max(send_s, 1e-9),
            "leads/s",
            "202s per second, 2 gateway workers, 64 requests in flight",
        ),
    ]


async def _drain_backlog(
    stack: LaunchedStack, target: Target, commits: Commits, replicas: int
) -> tuple[float, dict[str, Any]]:
    """A backlog waits on the raw topic (processors stopped), then ``replicas`` drain it."""
    await asyncio.to_thread(stop_process, "processor", stack.stack)
    await asyncio.to_thread(stop_process, EXTRA_PROCESSOR, stack.stack)
    gen, _ = await _send(target, rate=5000, total=BACKLOG_N, seconds=120, accepted={})
    ids = _ids(gen)
    say(f"pipeline: backlog of {len(ids)} leads, {replicas} processor(s)")
    for n in ["processor", EXTRA_PROCESSOR][:replicas]:
        stack.start_service(n)
    ok = await commits.wait_for(ids, DEADLINE_S)
    times = sorted(commits.at[r] for r in ids if r in commits.at)
    # The middle 80 % of the commits: start-up and the group's first rebalance
    # (the replicas join one after the other) stay out of the figure.
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    rate = (hi - lo) / max(times[hi] - times[lo], 1e-9) if hi > lo else 0.0
    return rate, _row(
        f"scaling: {replicas} processor(s) drain a backlog",
        rate,
        "leads/s",
        f"{len(ids)} leads waiting on the raw topic; 10th -> 90th percentile commit"
        + ("" if ok else ", INCOMPLETE"),
    )


async def _scaling(stack: LaunchedStack, target: Target, commits: Commits) -> list[dict[str, Any]]:
    """Drain a backlog with one, then two processors; and the ratio."""
    rows: list[dict[str, Any]] = []
    rates: dict[int, float] = {}
    for replicas in (1, 2):
        rates[replicas], row = await _drain_backlog(stack, target, commits, replicas)
        rows.append(row)
    if rates.get(1):
        rows.append(
            _row(
                "scaling: 2 / 1 processors",
                rates[2] / rates[1],
                "x",
                f"4 partitions, {os.cpu_count()} cores shared with Kafka, Postgres and the rest",
            )
        )
    return rows


async def run() -> list[dict[str, Any]]:
    stack = LaunchedStack(
        "bench-pipeline",
        port_base=18700,
        extra_env={
            "LEADWIRE_INGEST_WORKERS": "2",
            "LEADWIRE_IP_RATE_PER_MINUTE": "0",
            "LEADWIRE_LOG_LEVEL": "WARNING",
        },
    )
    async with running_stack(stack):
        assert stack.settings is not None
        target = await form_webhook(stack)
        commits = Commits()
        await commits.start(stack.settings.database_url)
        try:
            # Warm up: connections, caches, the consumer group settled.
            warm, _ = await _send(target, rate=50, total=100, seconds=3, accepted={})
            await commits.wait_for(_ids(warm), 60)
            rows = await _paced(target, commits)
            rows += await _burst(stack, target, commits)
            rows += await _scaling(stack, target, commits)
        finally:
            await commits.stop()
    return rows


def main() -> int:
    rows = asyncio.run(run())
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) and value == value else str(value)
        print(f"{r['metric']:<48} {shown:>12} {r['unit']:<8} {r['note']}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
