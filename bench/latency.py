"""Speed-to-lead under load: a vendor's synchronous call (``Prefer: wait=5``: the answer
comes once the lead is processed), paced at 20, 100, 300 and 1,000 leads/s (issue 15).

``python -m bench latency [--rates 20,100,300,1000] [--step-seconds 10]`` starts a stack of
its own (``bench-latency``: every service as ``make up`` runs it, with
``LEADWIRE_IP_RATE_PER_MINUTE=0``, Postgres with fsync on) and one unsigned
generic webhook, warms up, then holds each rate for the step's seconds, open loop
(:mod:`bench.httpload`: a request is due at its time whatever the answers before it did,
and its latency counts from then), each lead a new person. Before each step the stack has
caught up (every consumer group's lag 0, bounded). Printed per rate: the client-side round
trip's p50/p90/p99, the rate actually reached (answers per second, first send -> last
answer) and the share answered 200 (the outcome came within the wait; a 202 means it did
not). Written to ``test-output/bench/latency.png`` by ``make bench``.

Then where the time goes (table ``latency steps``): once the stack has caught up after a
rate, the stored requests of that rate (``webhook_requests``) give, per step name the
gateway and the processor recorded (``processing.steps``: each lead's own times), and for
``received -> stored`` (the processor's end time less the gateway's receive time), p50 and
p99 in ms; beside them the client's round trip again. What the round trip holds beyond
``received -> stored`` is the outcome's way back: the commit, Postgres' notification
(carrying the answer: shared/done.py), the answer's write.

And the processor's batches (table ``latency batches``, from its ``/metrics`` before and
after each rate): how many, leads per batch, each statement's mean ms per batch (the read,
the write, the record, the commit with its WAL flush) and the share of the rate's time
its transactions took: a processor near 100 % has no slack, and its leads queue.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp
import asyncpg
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench import report
from bench.cpu import load_average
from bench.figures import caption, cell, percentile
from bench.httpload import Plan, Result, build_requests, lead_bodies, load
from bench.lag import LagReader
from bench.options import Options
from bench.stack import LaunchedStack, form_webhook, make_up_stack, running_stack, say

TABLE = "latency"
STEPS_TABLE = "latency steps"
BATCH_TABLE = "latency batches"
# The processor's statements per batch, as its metrics name them (services/processor).
TX_STEPS = ("lookup", "write", "record", "commit")
STORED = "received -> stored"
ROUND_TRIP = "round trip (client)"
PREFER = {"Prefer": "wait=5"}
QUIET_DEADLINE_S = 120.0


def connections(rate: float) -> int:
    """Enough connections that a slow answer rarely holds the next request up (open loop:
    when one does, its wait still counts)."""
    return max(8, min(160, int(rate * 0.15)))


async def _quiet(stack: LaunchedStack) -> bool:
    """Every consumer group caught up (bounded): each step starts from a system at rest."""
    assert stack.settings is not None
    started = time.monotonic()
    async with LagReader(stack.settings) as reader:
        while time.monotonic() - started < QUIET_DEADLINE_S:
            if (await reader.read()).lag == 0:
                return True
            await asyncio.sleep(0.5)
    return False


async def _step(stack: LaunchedStack, path: str, rate: float, seconds: float) -> Result:
    count = int(rate * seconds) + 1
    bodies = lead_bodies(count, first=random.randrange(10**6, 10**9))
    return await load(
        Plan(
            port=stack.ports["ingest"],
            requests=build_requests(path, bodies, PREFER),
            concurrency=connections(rate),
            seconds=seconds,
            rate=rate,
        )
    )


def _rows(rate: float, result: Result, quiet: bool) -> list[dict[str, Any]]:
    label = f"{rate:g} leads/s"
    ok = result.statuses.get(200, 0)
    others = {s: n for s, n in result.statuses.items() if s != 200}
    note = f"{result.requests} requests, {connections(rate)} connections" + (
        f", other answers {others}" if others else ""
    )
    if result.errors:
        note += f", {result.errors} errors"
    if result.unsent:
        note += f", {result.unsent} not sent (every connection still busy 10 s after the end)"
    if not quiet:
        note += f"; the stack had not caught up after {QUIET_DEADLINE_S:.0f} s"
    return [
        cell("latency", TABLE, label, "reached", result.rps, "leads/s", note),
        *(
            cell("latency", TABLE, label, f"p{q * 100:.0f}", result.pct(q), "ms")
            for q in (0.50, 0.90, 0.99)
        ),
        cell("latency", TABLE, label, "answered 200", ok / max(result.requests, 1) * 100, "%"),
    ]


async def _stored_times(
    stack: LaunchedStack, webhook_id: uuid.UUID, since: datetime, until: datetime
) -> dict[str, list[float]]:
    """Per step name, the ms of every request received in [since, until) and stored; and
    under ``STORED`` each one's processor end less its gateway receive time."""
    assert stack.settings is not None
    times: dict[str, list[float]] = defaultdict(list)
    conn = await asyncpg.connect(stack.settings.database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT steps::text AS steps,"
            " extract(epoch FROM processed_at - received_at) * 1000 AS stored"
            " FROM webhook_requests"
            " WHERE webhook_id = $1 AND received_at >= $2 AND received_at < $3",
            webhook_id,
            since,
            until,
        )
    finally:
        await conn.close()
    for row in rows:
        for name, value in orjson.loads(row["steps"] or "{}").items():
            if isinstance(value, (int, float)):
                times[name].append(float(value))
        if row["stored"] is not None:
            times[STORED].append(float(row["stored"]))
    return times


def _step_rows(rate: float, times: dict[str, list[float]], result: Result) -> list[dict[str, Any]]:
    """The ``latency steps`` cells of one rate: a row per step, p50 and p99 columns."""
    label = f"{rate:g}/s"
    names = [n for n in times if n != STORED] + [STORED]
    rows = []
    for name in names:
        values = times.get(name, [])
        note = f"{len(values)} stored requests"
        for q in (0.50, 0.99):
            column = f"{label} p{q * 100:.0f}"
            rows.append(
                cell("latency", STEPS_TABLE, name, column, percentile(values, q), "ms", note)
            )
    for q in (0.50, 0.99):
        column = f"{label} p{q * 100:.0f}"
        rows.append(cell("latency", STEPS_TABLE, ROUND_TRIP, column, result.pct(q), "ms"))
    return rows


async def _processor_sums(stack: LaunchedStack) -> dict[str, float]:
    """The processor's running totals: batches, leads, and seconds per step."""
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.ops_url("processor") + "/metrics") as response:
            text = await response.text()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leadwire_processor_batch_size_count":
                sums["batches"] = sample.value
            elif sample.name == "leadwire_processor_batch_size_sum":
                sums["leads"] = sample.value
            elif sample.name == "leadwire_processor_step_seconds_sum":
                sums[sample.labels["step"]] = sample.value
    return sums


def _batch_rows(
    rate: float, before: dict[str, float], after: dict[str, float], seconds: float
) -> list[dict[str, Any]]:
    """The ``latency batches`` cells of one rate."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    batches = max(delta.get("batches", 0.0), 1.0)
    column = f"{rate:g}/s"
    rows = [
        cell(
            "latency", BATCH_TABLE, "batches per second", column, delta["batches"] / seconds, "/s"
        ),
        cell(
            "latency", BATCH_TABLE, "leads per batch", column, delta["leads"] / batches, "per batch"
        ),
    ]
    for step in TX_STEPS:
        ms = delta.get(step, 0.0) / batches * 1000
        rows.append(cell("latency", BATCH_TABLE, f"{step} ms per batch", column, ms, "ms"))
    busy = sum(delta.get(step, 0.0) for step in TX_STEPS) / seconds * 100
    rows.append(cell("latency", BATCH_TABLE, "in transactions", column, busy, "%"))
    return rows


async def run(opts: Options = Options()) -> list[dict[str, Any]]:
    stack = make_up_stack("bench-latency", port_base=18400)
    rows: list[dict[str, Any]] = []
    async with running_stack(stack):
        target = await form_webhook(stack)
        path = urlparse(target.url).path
        warm = await _step(stack, path, 50, 4)
        say(f"latency: warm-up: {warm.short()}")
        load_before = load_average()
        steps: list[dict[str, Any]] = []
        batches: list[dict[str, Any]] = []
        for rate in opts.rates:
            quiet = await _quiet(stack)
            since, sums = datetime.now(UTC), await _processor_sums(stack)
            began = time.monotonic()
            result = await _step(stack, path, rate, opts.step_seconds)
            seconds = time.monotonic() - began
            batches += _batch_rows(rate, sums, await _processor_sums(stack), seconds)
            say(f"latency: {rate:g}/s: {result.short()}")
            rows += _rows(rate, result, quiet)
            await _quiet(stack)  # every lead of the rate stored
            times = await _stored_times(stack, uuid.UUID(target.id), since, datetime.now(UTC))
            steps += _step_rows(rate, times, result)
        rows.append(
            caption(
                "latency",
                TABLE,
                f"Prefer: wait=5, client-side round trip from when each request was due "
                f"(open loop), {opts.step_seconds:g} s per rate, every service running "
                f"(gateway processes: {stack.gateway_workers}), Postgres fsync on; "
                f"load average {load_before} before, {load_average()} after",
            )
        )
        rows += steps
        rows.append(
            caption(
                "latency",
                STEPS_TABLE,
                f"where the time goes: each stored lead's own step times (ms, p50/p99 per "
                f"rate), '{STORED}' from the gateway's receive to the processor's end; the "
                f"round trip beyond it is the commit, the notification (carrying the answer) "
                f"and the answer",
            )
        )
        rows += batches
        rows.append(
            caption(
                "latency",
                BATCH_TABLE,
                "the processor's batches during each rate (its /metrics before and after): "
                "each statement's mean ms per batch, and the share of the rate's time spent "
                "in its transactions (near 100 %: no slack, leads queue for the next batch)",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in Options.rates))
    parser.add_argument("--step-seconds", type=float, default=Options.step_seconds)
    args = parser.parse_args()
    opts = Options(
        rates=tuple(float(r) for r in args.rates.split(",")), step_seconds=args.step_seconds
    )
    print(report.render(asyncio.run(run(opts))))


if __name__ == "__main__":
    main()
