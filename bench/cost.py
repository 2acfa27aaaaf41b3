"""What a lead costs the whole system: CPU µs per lead in each process, and leads/s through
everything (issue 14's table).

``python -m bench cost [--leads N]`` starts a stack of its own (``bench-cost``: every
service as ``make up`` runs it, with ``LEADWIRE_IP_RATE_PER_MINUTE=0``, Postgres with fsync
on), makes one unsigned generic webhook, warms up, then sends ``N`` distinct leads (10,000
by default) as fast as the gateway takes them (:mod:`bench.httpload`, 32 keep-alive
connections, closed loop) and waits until every consumer group has caught up, read from
Kafka itself: the processor's group on the raw topic, the notifier's, analytics' and the
archiver's on the outcome topic (committed offsets against end offsets; and the outcome
topic holds an outcome for every lead the raw topic received). Over that run (first send ->
every group's lag 0) each process's CPU is read from /proc (:mod:`bench.cpu`): the
gateway's supervisor and workers, Postgres's postmaster and backends, Kafka, the S3 server,
each consumer, and any other service the stack runs. Bounded: a run that does not catch up
within its deadline prints what it has, marked. Beside each process: its CPU at rest (5 s
before the burst, nothing sent), which the per-lead figure includes for as long as the run
lasts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import asyncpg

from bench import report
from bench.cpu import CpuMeter, load_average
from bench.figures import caption, cell, figure
from bench.httpload import Plan, Result, build_requests, lead_bodies, load
from bench.lag import GROUPS, LagReader, Reading
from bench.options import Options
from bench.stack import LaunchedStack, form_webhook, make_up_stack, running_stack, say
from shared import topics

TABLE = "cost"
CONNECTIONS = 32
POLL_S = 0.25
REST_S = 5.0
# The processes of the table, in the order: tracked name -> label (any other
# process of the stack follows under its own name).
PROCESSES = {
    "archiver": "archiver",
    "s3": "S3 server (versitygw)",
    "ingest": "ingest (the gateway's processes)",
    "processor": "processor",
    "kafka": "Kafka",
    "postgres": "Postgres (postmaster + backends)",
    "notifier": "notifier",
    "analytics": "analytics",
}
CONSUMED = {
    service: topics.RAW if topics.RAW in logical else topics.OUTCOMES
    for service, (_, logical) in GROUPS.items()
}


@dataclass
class Run:
    """One burst, from the first send until every group has caught up."""

    leads: int = 0  # messages the raw topic received
    sent: Result | None = None
    send_s: float = 0.0
    caught_up_s: dict[str, float] = field(default_factory=dict)  # group -> s after first send
    seconds: float = 0.0  # first send -> every group's lag 0
    complete: bool = False
    cpu_s: dict[str, float] = field(default_factory=dict)


def _caught_up(reading: Reading, before: Reading, leads: int) -> dict[str, bool]:
    """Per service: its group has consumed everything the burst put on its topic."""
    out = {}
    for service, topic in CONSUMED.items():
        if service not in reading.lags:
            continue  # not read: caught up already
        arrived = reading.ends[topic] - before.ends[topic]
        out[service] = arrived >= leads and reading.lags[service] == 0
    return out


async def _burst(stack: LaunchedStack, requests: list[bytes], deadline_s: float) -> Run:
    assert stack.settings is not None
    run = Run()
    async with LagReader(stack.settings) as reader:
        before = await reader.read()
        meter = CpuMeter(stack.pids())
        await meter.start()
        began = time.monotonic()
        sending = asyncio.create_task(
            load(
                Plan(
                    port=stack.ports["ingest"],
                    requests=requests,
                    concurrency=CONNECTIONS,
                    seconds=deadline_s,
                    total=len(requests),
                )
            )
        )
        while time.monotonic() - began < deadline_s:
            await asyncio.sleep(POLL_S)
            if sending.done() and run.sent is None:
                run.sent, run.send_s = sending.result(), time.monotonic() - began
            if run.sent is None:
                continue  # no group can have caught up before the last 202
            # Only the groups still behind: the reading's own requests count in Kafka's row.
            reading = await reader.read(s for s in CONSUMED if s not in run.caught_up_s)
            run.leads = reading.ends[topics.RAW] - before.ends[topics.RAW]
            now = time.monotonic() - began
            for service, done in _caught_up(reading, before, run.leads).items():
                if done:
                    run.caught_up_s.setdefault(service, now)
            if len(run.caught_up_s) == len(CONSUMED):
                run.complete = True
                break
        run.cpu_s = await meter.stop()
        run.seconds = meter.elapsed_s
        if not sending.done():
            sending.cancel()
    return run


async def _warm_up(stack: LaunchedStack, path: str) -> None:
    """A few hundred leads through everything first: connections, caches, the groups settled."""
    warm = build_requests(path, lead_bodies(300, first=random.randrange(10**8, 10**9)))
    run = await _burst(stack, warm, 120)
    say(f"cost: warm-up of {run.leads} leads caught up in {run.seconds:.1f} s")


async def _at_rest(stack: LaunchedStack, seconds: float) -> dict[str, float]:
    """Each process's CPU while nothing is sent (consumers polling, timers): % of a core."""
    meter = CpuMeter(stack.pids())
    await meter.start()
    await asyncio.sleep(seconds)
    used = await meter.stop()
    return {name: cpu / meter.elapsed_s * 100 for name, cpu in used.items()}


async def _durability(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        found = {k: await conn.fetchval(f"SHOW {k}") for k in ("fsync", "synchronous_commit")}
    finally:
        await conn.close()
    return ", ".join(f"{k}={v}" for k, v in found.items())


def _rows(run: Run, rest: dict[str, float], durability: str, loads: str) -> list[dict[str, Any]]:
    leads = max(run.leads, 1)
    # The processes, then any other process of the stack (a service added since).
    named = {**PROCESSES, **{n: n for n in sorted(run.cpu_s) if n not in PROCESSES}}
    total = sum(run.cpu_s.get(name, 0.0) for name in named)
    rows = []
    for name, label in [*named.items(), ("total", "total")]:
        seconds = total if name == "total" else run.cpu_s.get(name, 0.0)
        idle = sum(rest.get(n, 0.0) for n in named) if name == "total" else rest.get(name, 0.0)
        rows.append(cell("cost", TABLE, label, "CPU µs per lead", seconds / leads * 1e6, "µs"))
        rows.append(cell("cost", TABLE, label, "share", seconds / total * 100 if total else 0, "%"))
        rows.append(
            cell("cost", TABLE, label, "at rest, % of a core", idle, "%", "before the burst")
        )
    mark = "" if run.complete else f"; INCOMPLETE: not caught up after {run.seconds:.0f} s"
    rows.append(
        figure(
            "cost",
            "leads/s through everything",
            run.leads / run.seconds if run.seconds else 0.0,
            "leads/s",
            f"{run.leads} leads, first send -> every group's lag 0 in {run.seconds:.1f} s{mark}",
        )
    )
    rows.append(
        figure(
            "cost",
            "gateway intake",
            run.leads / run.send_s if run.send_s else 0.0,
            "leads/s",
            f"202s per second, {CONNECTIONS} connections, closed loop",
        )
    )
    for service in CONSUMED:
        at = run.caught_up_s.get(service)
        rows.append(
            figure(
                "cost",
                f"{service} caught up after",
                at if at is not None else float("nan"),
                "s",
                f"lag 0 on {CONSUMED[service]}, from the first send",
            )
        )
    statuses = run.sent.statuses if run.sent is not None else {}
    rows.append(
        caption(
            "cost",
            TABLE,
            f"{run.leads:,} leads to one webhook, every service as `make up` runs it, "
            f"Postgres {durability}: {run.leads / run.seconds if run.seconds else 0:,.0f} "
            f"leads/s through everything (first send -> every consumer group's lag 0 in "
            f"{run.seconds:.1f} s{mark}); answers {statuses}; CPU utime+stime from /proc over "
            f"the run; {loads}",
        )
    )
    return rows


async def run(opts: Options = Options()) -> list[dict[str, Any]]:
    stack = make_up_stack("bench-cost", port_base=18300)
    async with running_stack(stack):
        assert stack.settings is not None
        durability = await _durability(stack.settings.database_url)
        target = await form_webhook(stack)
        path = urlparse(target.url).path
        await _warm_up(stack, path)
        rest = await _at_rest(stack, REST_S)
        requests = build_requests(path, lead_bodies(opts.leads, first=random.randrange(10**6)))
        load_before = load_average()
        say(f"cost: {opts.leads} leads, Postgres {durability}")
        result = await _burst(stack, requests, deadline_s=max(300.0, opts.leads / 20))
        say(
            f"cost: {result.leads} leads through everything in {result.seconds:.1f} s "
            f"(caught up: {result.caught_up_s})"
        )
        loads = f"load average {load_before} before, {load_average()} after"
        return _rows(result, rest, durability, loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=Options.leads)
    args = parser.parse_args()
    print(report.render(asyncio.run(run(Options(leads=args.leads)))))


if __name__ == "__main__":
    main()
